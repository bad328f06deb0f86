import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { SubscriptionTrie } from '../../src/routing/subscription-trie.js'
import { topicMatches } from '../../src/protocol/topics.js'
import { filterArb, topicArb } from './topic-arbitraries.js'

interface Client {
  id: string
}

const client = (id: string): Client => ({ id })

/** The sorted "subscriber filter" pairs `topic` reaches, for order-free comparison. */
function matches(trie: SubscriptionTrie<Client, number>, topic: string): string[] {
  const out: string[] = []
  trie.match(topic, (s, _o, f) => out.push(`${s.id} ${f}`))
  return out.sort()
}

/** The filters that match `topic` in a trie where each filter has one subscriber named after it. */
function filtersFor(filters: string[], topic: string): string[] {
  const trie = new SubscriptionTrie<Client, number>()
  for (const f of filters) trie.add(f, client(f), 0)
  const out: string[] = []
  trie.match(topic, (_s, _o, f) => out.push(f))
  return out.sort()
}

describe('SubscriptionTrie matching', () => {
  it('matches exact filters only on the same levels', () => {
    const filters = ['a', 'a/b', 'a/b/c', 'b', 'a/c']
    assert.deepEqual(filtersFor(filters, 'a/b'), ['a/b'])
    assert.deepEqual(filtersFor(filters, 'a'), ['a'])
    assert.deepEqual(filtersFor(filters, 'a/b/c'), ['a/b/c'])
    assert.deepEqual(filtersFor(filters, 'a/b/c/d'), [])
    assert.deepEqual(filtersFor(filters, 'A/b'), [])
  })

  it("matches '+' against exactly one level", () => {
    const filters = ['+', 'a/+', '+/b', 'a/+/c', '+/+']
    assert.deepEqual(filtersFor(filters, 'a'), ['+'])
    assert.deepEqual(filtersFor(filters, 'a/b'), ['+/+', '+/b', 'a/+'])
    assert.deepEqual(filtersFor(filters, 'a/x/c'), ['a/+/c'])
    assert.deepEqual(filtersFor(filters, 'x/y'), ['+/+'])
    assert.deepEqual(filtersFor(filters, 'a/b/c/d'), [])
  })

  it("matches '#' against any number of remaining levels", () => {
    const filters = ['a/#', 'a/b/#', '+/#', 'b/#']
    assert.deepEqual(filtersFor(filters, 'a/b/c/d'), ['+/#', 'a/#', 'a/b/#'])
    assert.deepEqual(filtersFor(filters, 'a/b'), ['+/#', 'a/#', 'a/b/#'])
    assert.deepEqual(filtersFor(filters, 'c'), ['+/#'])
  })

  it("matches 'a/#' against the parent level 'a'", () => {
    assert.deepEqual(filtersFor(['a/#'], 'a'), ['a/#'])
    assert.deepEqual(filtersFor(['a/b/#'], 'a'), [])
    assert.deepEqual(filtersFor(['a/+/#'], 'a/b'), ['a/+/#'])
    assert.deepEqual(filtersFor(['a/#'], 'ab'), [])
  })

  it("matches '#' alone against every topic not starting with '$'", () => {
    for (const topic of ['a', 'a/b/c', '/', '/a', 'a//b', 'x$', 'a/$SYS']) {
      assert.deepEqual(filtersFor(['#'], topic), ['#'], topic)
    }
  })

  it("matches '+/+' only against two levels", () => {
    assert.deepEqual(filtersFor(['+/+'], 'a/b'), ['+/+'])
    assert.deepEqual(filtersFor(['+/+'], '/'), ['+/+'])
    assert.deepEqual(filtersFor(['+/+'], 'a'), [])
    assert.deepEqual(filtersFor(['+/+'], 'a/b/c'), [])
  })

  it('treats empty levels as levels', () => {
    const filters = ['/a', '+/a', 'a//b', 'a/+/b', '/', '+/+', 'a/', 'a/+', '+', '/#']
    assert.deepEqual(filtersFor(filters, '/a'), ['+/+', '+/a', '/#', '/a'])
    assert.deepEqual(filtersFor(filters, 'a//b'), ['a/+/b', 'a//b'])
    assert.deepEqual(filtersFor(filters, '/'), ['+/+', '/', '/#'])
    assert.deepEqual(filtersFor(filters, 'a/'), ['+/+', 'a/', 'a/+'])
    assert.deepEqual(filtersFor(filters, 'a'), ['+'])
  })

  it("keeps wildcard-first filters off '$' topics [MQTT-4.7.2-1]", () => {
    const filters = ['#', '+/monitor/Clients', '+/#', '+', '$SYS/#', '$SYS/monitor/+', '$SYS/monitor/Clients']
    assert.deepEqual(filtersFor(filters, '$SYS/monitor/Clients'), ['$SYS/#', '$SYS/monitor/+', '$SYS/monitor/Clients'])
    assert.deepEqual(filtersFor(filters, '$SYS'), ['$SYS/#'])
    assert.deepEqual(filtersFor(filters, '$other'), [])
    assert.deepEqual(filtersFor(filters, 'SYS/monitor/Clients'), ['#', '+/#', '+/monitor/Clients'])
    // Only the first level is special.
    assert.deepEqual(filtersFor(['a/+', 'a/#'], 'a/$b'), ['a/#', 'a/+'])
  })

  it('visits a subscriber once per overlapping filter, with that filter and its options', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const c = client('c')
    trie.add('a/b', c, 1)
    trie.add('a/+', c, 2)
    trie.add('#', c, 0)
    const seen: [string, number][] = []
    trie.match('a/b', (s, o, f) => {
      assert.equal(s, c)
      seen.push([f, o])
    })
    assert.deepEqual(seen.sort(), [['#', 0], ['a/+', 2], ['a/b', 1]])
  })

  it('visits the subscribers of one filter in subscribe order', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const clients = ['c', 'a', 'b', 'd'].map(client)
    for (const c of clients) trie.add('t', c, 0)
    const order: string[] = []
    trie.match('t', (s) => order.push(s.id))
    assert.deepEqual(order, ['c', 'a', 'b', 'd'])
  })

  it('tells subscribers apart by identity', () => {
    const trie = new SubscriptionTrie<Client, number>()
    trie.add('t', client('x'), 0)
    trie.add('t', client('x'), 0)
    assert.equal(trie.size, 2)
    assert.deepEqual(matches(trie, 't'), ['x t', 'x t'])
  })

  it('survives a visitor that re-enters match()', () => {
    const trie = new SubscriptionTrie<Client, number>()
    for (const f of ['a/#', 'a/+', 'a/b', '+/b', 'b']) trie.add(f, client(f), 0)
    const outer: string[] = []
    const inner: string[] = []
    trie.match('a/b', (s) => {
      outer.push(s.id)
      trie.match('b', (t) => inner.push(t.id))
    })
    assert.deepEqual(outer.sort(), ['+/b', 'a/#', 'a/+', 'a/b'])
    assert.deepEqual(inner, ['b', 'b', 'b', 'b'])
  })

  it('recovers from a visitor that throws', () => {
    const trie = new SubscriptionTrie<Client, number>()
    for (const f of ['a/#', 'a/+', 'a/b']) trie.add(f, client(f), 0)
    assert.throws(() =>
      trie.match('a/b', () => {
        throw new Error('boom')
      }),
    )
    assert.deepEqual(matches(trie, 'a/b'), ['a/# a/#', 'a/+ a/+', 'a/b a/b'])
  })

  // 30,000 levels stays under the 65,535-byte limit and well past what recursion survives.
  it('walks very deep topics without overflowing the stack', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const deep = 'a/'.repeat(30_000) + 'a'
    const filter = '+/'.repeat(30_000) + '#'
    trie.add(deep, client('exact'), 0)
    trie.add(filter, client('wild'), 0)
    assert.deepEqual(matches(trie, deep), [`exact ${deep}`, `wild ${filter}`])
    assert.equal(trie.remove(deep, { id: 'exact' }), false)
  })
})

describe('SubscriptionTrie add and remove', () => {
  it('replaces the options of the same subscriber on the same filter', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const c = client('c')
    assert.equal(trie.add('a/+', c, 1), true)
    assert.equal(trie.add('a/+', c, 2), false)
    assert.equal(trie.size, 1)
    const seen: number[] = []
    trie.match('a/x', (_s, o) => seen.push(o))
    assert.deepEqual(seen, [2])
  })

  it('counts (filter, subscriber) entries in size', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const [a, b] = [client('a'), client('b')]
    assert.equal(trie.size, 0)
    trie.add('x', a, 0)
    trie.add('x', b, 0)
    trie.add('x/#', a, 0)
    trie.add('#', a, 0)
    assert.equal(trie.size, 4)
    assert.equal(trie.remove('x', a), true)
    assert.equal(trie.remove('x', a), false)
    assert.equal(trie.size, 3)
  })

  it('reports whether a removed entry existed', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const [a, b] = [client('a'), client('b')]
    trie.add('a/b', a, 0)
    assert.equal(trie.remove('a/b', b), false)
    assert.equal(trie.remove('a', a), false)
    assert.equal(trie.remove('a/b/c', a), false)
    assert.equal(trie.remove('a/+', a), false)
    assert.equal(trie.remove('a/#', a), false)
    assert.equal(trie.remove('a/b#', a), false)
    assert.equal(trie.remove('a/b', a), true)
    assert.deepEqual(matches(trie, 'a/b'), [])
  })

  it('keeps other entries on shared nodes when removing one', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const [a, b] = [client('a'), client('b')]
    trie.add('a/b', a, 0)
    trie.add('a/b', b, 0)
    trie.add('a/b/#', a, 0)
    trie.add('a/b/c', a, 0)
    trie.remove('a/b', a)
    assert.deepEqual(matches(trie, 'a/b'), ['a a/b/#', 'b a/b'])
    trie.remove('a/b/#', a)
    assert.deepEqual(matches(trie, 'a/b'), ['b a/b'])
    assert.deepEqual(matches(trie, 'a/b/c'), ['a a/b/c'])
  })

  it('rejects invalid filters', () => {
    const trie = new SubscriptionTrie<Client, number>()
    for (const f of ['', 'a/#/b', 'a#', 'a/b+', '+a']) {
      assert.throws(() => trie.add(f, client('c'), 0), RangeError, f)
    }
    assert.equal(trie.size, 0)
    assert.equal(trie.nodeCount(), 1)
  })

  it('prunes every node it created once the entries are gone', () => {
    const trie = new SubscriptionTrie<Client, number>()
    const keep = client('keep')
    trie.add('a/b', keep, 0)
    const before = trie.nodeCount()
    const filters = ['#', '+', 'a/#', 'a/b/c', 'a/+/c/#', '+/+/+', '/', '//', 'x/y/z', 'a/b', '$SYS/#']
    const clients = [client('1'), client('2'), client('3')]
    for (let round = 0; round < 3; round++) {
      for (const f of filters) for (const c of clients) trie.add(f, c, round)
      assert.ok(trie.nodeCount() > before)
      // Remove in a different order from the one they were added in.
      for (const f of [...filters].reverse()) for (const c of clients) assert.equal(trie.remove(f, c), true)
      assert.equal(trie.nodeCount(), before)
      assert.equal(trie.size, 1)
    }
    trie.remove('a/b', keep)
    assert.equal(trie.nodeCount(), 1)
    assert.equal(trie.size, 0)
  })
})

describe('SubscriptionTrie against topicMatches', () => {
  it('visits exactly the (subscriber, filter) pairs topicMatches accepts', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(filterArb, fc.integer({ min: 0, max: 3 })), { maxLength: 30 }),
        fc.array(topicArb, { minLength: 1, maxLength: 10 }),
        (subs, topics) => {
          const trie = new SubscriptionTrie<Client, number>()
          const clients = [0, 1, 2, 3].map((i) => client(String(i)))
          const entries = new Set<string>()
          for (const [f, i] of subs) {
            trie.add(f, clients[i] as Client, i)
            entries.add(`${i} ${f}`)
          }
          assert.equal(trie.size, entries.size)
          for (const topic of topics) {
            const expected = [...entries].filter((e) => topicMatches(e.slice(e.indexOf(' ') + 1), topic)).sort()
            assert.deepEqual(matches(trie, topic), expected, topic)
          }
        },
      ),
      { numRuns: 500 },
    )
  })

  it('returns to its starting node count after any add/remove churn', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(filterArb, fc.integer({ min: 0, max: 2 }), fc.boolean())), (ops) => {
        const trie = new SubscriptionTrie<Client, number>()
        const clients = [0, 1, 2].map((i) => client(String(i)))
        const live = new Set<string>()
        for (const [f, i, add] of ops) {
          const key = `${i} ${f}`
          if (add) {
            assert.equal(trie.add(f, clients[i] as Client, 0), !live.has(key))
            live.add(key)
          } else {
            assert.equal(trie.remove(f, clients[i] as Client), live.delete(key))
          }
        }
        assert.equal(trie.size, live.size)
        for (const key of live) trie.remove(key.slice(key.indexOf(' ') + 1), clients[Number(key[0])] as Client)
        assert.equal(trie.size, 0)
        assert.equal(trie.nodeCount(), 1)
      }),
      { numRuns: 300 },
    )
  })
})
