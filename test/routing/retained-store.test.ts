import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { RetainedIndex } from '../../src/routing/retained-store.js'
import { topicMatches } from '../../src/protocol/topics.js'
import { filterArb, topicArb } from './topic-arbitraries.js'

/** An index where each topic's message is the topic itself, so results read as topic lists. */
function indexOf(topics: string[]): RetainedIndex<string> {
  const index = new RetainedIndex<string>()
  for (const t of topics) index.set(t, t)
  return index
}

const sorted = (xs: string[]): string[] => [...xs].sort()

describe('RetainedIndex storage', () => {
  it('sets, replaces, gets and deletes by exact topic', () => {
    const index = new RetainedIndex<number>()
    index.set('a/b', 1)
    index.set('a', 2)
    index.set('a/b', 3)
    assert.equal(index.size, 2)
    assert.equal(index.get('a/b'), 3)
    assert.equal(index.get('a'), 2)
    assert.equal(index.get('a/b/c'), undefined)
    assert.equal(index.get('b'), undefined)
    assert.equal(index.has('a'), true)
    assert.equal(index.delete('a'), true)
    assert.equal(index.delete('a'), false)
    assert.equal(index.has('a'), false)
    assert.equal(index.get('a/b'), 3)
    assert.equal(index.size, 1)
  })

  it('tells a missing message from a stored undefined', () => {
    const index = new RetainedIndex<undefined>()
    index.set('a', undefined)
    assert.equal(index.has('a'), true)
    assert.equal(index.size, 1)
    assert.deepEqual(index.match('a'), [undefined])
  })

  it('lists every entry', () => {
    const topics = ['a', 'a/b', '/', '$SYS/x', 'a//b']
    const index = indexOf(topics)
    assert.deepEqual(sorted([...index.entries()].map(([t, m]) => `${t}=${m}`)), sorted(topics.map((t) => `${t}=${t}`)))
  })

  it('prunes every node it created once the messages are gone', () => {
    const index = indexOf(['keep/me'])
    const before = index.nodeCount()
    const topics = ['a', 'a/b', 'a/b/c', '/', '//', 'x/y/z', 'keep', 'keep/me/too', '$SYS/a']
    for (let round = 0; round < 3; round++) {
      for (const t of topics) index.set(t, t)
      assert.ok(index.nodeCount() > before)
      for (const t of [...topics].reverse()) assert.equal(index.delete(t), true)
      assert.equal(index.nodeCount(), before)
      assert.equal(index.size, 1)
    }
    assert.equal(index.delete('keep'), false)
    assert.equal(index.delete('keep/me/too'), false)
    index.delete('keep/me')
    assert.equal(index.nodeCount(), 1)
  })
})

describe('RetainedIndex.match', () => {
  const topics = ['a', 'a/b', 'a/c', 'a/b/c', 'b', '/', '/a', 'a/', 'a//b', '$SYS', '$SYS/load', 'x/$y']
  const index = indexOf(topics)

  it('matches exact filters', () => {
    assert.deepEqual(index.match('a/b'), ['a/b'])
    assert.deepEqual(index.match('a//b'), ['a//b'])
    assert.deepEqual(index.match('a/b/c/d'), [])
    assert.deepEqual(index.match('$SYS'), ['$SYS'])
  })

  it("matches '+' against one level, empty ones included", () => {
    assert.deepEqual(sorted(index.match('a/+')), ['a/', 'a/b', 'a/c'])
    assert.deepEqual(sorted(index.match('+')), ['a', 'b'])
    assert.deepEqual(sorted(index.match('+/+')), ['/', '/a', 'a/', 'a/b', 'a/c', 'x/$y'])
    assert.deepEqual(sorted(index.match('a/+/b')), ['a//b'])
  })

  it("matches '#' and the parent level", () => {
    assert.deepEqual(sorted(index.match('a/#')), ['a', 'a/', 'a//b', 'a/b', 'a/b/c', 'a/c'])
    assert.deepEqual(sorted(index.match('a/b/#')), ['a/b', 'a/b/c'])
    assert.deepEqual(sorted(index.match('+/#')), sorted(topics.filter((t) => !t.startsWith('$'))))
  })

  it("keeps wildcard-first filters off '$' topics [MQTT-4.7.2-1]", () => {
    assert.deepEqual(sorted(index.match('#')), sorted(topics.filter((t) => !t.startsWith('$'))))
    assert.deepEqual(sorted(index.match('$SYS/#')), ['$SYS', '$SYS/load'])
    assert.deepEqual(index.match('+/load'), [])
    assert.deepEqual(index.match('x/+'), ['x/$y'])
  })

  it('walks deep topics without overflowing the stack', () => {
    const deep = 'a/'.repeat(30_000) + 'a'
    const big = indexOf([deep])
    assert.deepEqual(big.match('#'), [deep])
    assert.deepEqual(big.match(deep), [deep])
    assert.equal(big.delete(deep), true)
    assert.equal(big.nodeCount(), 1)
  })
})

describe('RetainedIndex against topicMatches', () => {
  it('returns exactly the stored topics topicMatches accepts', () => {
    fc.assert(
      fc.property(fc.array(topicArb, { maxLength: 30 }), fc.array(filterArb, { minLength: 1, maxLength: 10 }), (stored, filters) => {
        const index = indexOf(stored)
        const unique = [...new Set(stored)]
        assert.equal(index.size, unique.length)
        for (const filter of filters) {
          assert.deepEqual(sorted(index.match(filter)), sorted(unique.filter((t) => topicMatches(filter, t))), filter)
        }
      }),
      { numRuns: 500 },
    )
  })

  it('returns to its starting node count after any set/delete churn', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(topicArb, fc.boolean())), (ops) => {
        const index = new RetainedIndex<number>()
        const live = new Set<string>()
        for (const [topic, set] of ops) {
          if (set) {
            index.set(topic, 0)
            live.add(topic)
          } else {
            assert.equal(index.delete(topic), live.delete(topic))
          }
        }
        assert.equal(index.size, live.size)
        assert.deepEqual(sorted([...index.entries()].map(([t]) => t)), sorted([...live]))
        for (const topic of live) index.delete(topic)
        assert.equal(index.nodeCount(), 1)
      }),
      { numRuns: 300 },
    )
  })
})
