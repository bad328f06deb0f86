// Cluster: a client id last seen on a node that died is free once a survivor adopted that node:
// a client that had disconnected normally from n1 (no session left there) connects to n2 after
// n1 was killed and adopted, and is accepted at once, as is one whose session n1 still held.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Cluster, skipCluster } from './harness.js'

describe('cluster: client ids of a dead node', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2'])
  })
  after(() => cluster?.dispose())

  test('after n1 was killed and adopted, its former clients connect to n2 and are accepted', { timeout: 60_000 }, async () => {
    // One that left n1 normally (its clean session ended there), one still connected when n1 dies.
    const left = await cluster.mqtt('n1', { clientId: 'dead-left', protocolVersion: 5 })
    await left.client.endAsync()
    await cluster.mqtt('n1', { clientId: 'dead-stayed', protocolVersion: 5, will: { topic: 'dead/will', payload: Buffer.from('gone'), qos: 1, retain: false } })
    const watcher = await cluster.mqtt('n2', { clientId: 'dead-watcher', protocolVersion: 5 })
    await watcher.client.subscribeAsync('dead/will', { qos: 1 })
    await cluster.kill('n1')
    // The will of the client still connected is published by the node that adopted n1: n1 is adopted.
    await watcher.inbox.waitForTopic('dead/will', 30_000)
    for (const clientId of ['dead-left', 'dead-stayed']) {
      const { connack } = await cluster.mqtt('n2', { clientId, protocolVersion: 5 })
      assert.equal(connack.reasonCode ?? 0, 0, `${clientId} accepted on n2`)
    }
  })
})
