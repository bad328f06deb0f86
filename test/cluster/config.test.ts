// Cluster: what the command line refuses. `--cluster` with `--persistence` is a usage error
// (exit 2, before anything is opened); a second process with the node id of a live node exits 1
// saying so, and the live node goes on serving.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { runCli, startCli } from '../cli/run.js'
import { AckingSubscriber, Cluster, nodeArgs, skipCluster, subscribe } from './harness.js'

describe('cluster: command line', () => {
  // Port 1 is closed: a CLI that tried to reach the server first would fail with exit 1, not 2.
  for (const persistence of ['memory', 'redis://127.0.0.1:1/0']) {
    test(`--cluster with --persistence ${persistence} is a usage error: exit 2, a message naming --cluster`, () => {
      const r = runCli(nodeArgs('redis://127.0.0.1:1/0', 'n1', ['--persistence', persistence]))
      assert.equal(r.status, 2, `exit code; printed:\n${r.stdout}${r.stderr}`)
      assert.match(r.stderr, /--cluster/, 'the message names --cluster')
      assert.doesNotMatch(r.stdout + r.stderr, /listening on/, 'it never listened')
    })
  }

  test('a second process with the node id of a live node exits 1 mentioning the node id; the live node serves on', { skip: skipCluster(), timeout: 90_000 }, async (t) => {
    const cluster = await Cluster.start(['n1'])
    t.after(() => cluster.dispose())
    const duplicate = startCli(nodeArgs(cluster.url, 'n1'))
    t.after(() => duplicate.kill())
    const code = await duplicate.exit()
    assert.equal(code, 1, `exit code of the duplicate; printed:\n${duplicate.output()}`)
    assert.match(duplicate.output(), /node id/, 'the message mentions the node id')
    assert.doesNotMatch(duplicate.output(), /listening on/, 'the duplicate never listened')

    assert.ok(cluster.node('n1').alive, `n1 still runs:\n${cluster.logs()}`)
    let sub!: AckingSubscriber
    const { peer } = await cluster.connect('n1', { clientId: 'after-duplicate', version: 5 }, (p) => (sub = new AckingSubscriber(p)))
    await subscribe(peer, 1, [{ topicFilter: 'dup/t', qos: 1 }])
    // The cluster still works: a second node joins and a message crosses; n1 still holds its id.
    await cluster.startNode('n2')
    await cluster.roundTrip('n2', 'dup/t', 'dup:after', sub)
    const again = startCli(nodeArgs(cluster.url, 'n1'))
    t.after(() => again.kill())
    assert.equal(await again.exit(), 1, `a later duplicate of n1 is refused too; printed:\n${again.output()}`)
    assert.ok(cluster.node('n1').alive, `n1 still runs:\n${cluster.logs()}`)
  })
})
