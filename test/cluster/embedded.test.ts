/**
 * Cluster mode embedded: two Brokers in this process on a test-started redis-server. What the
 * API says about the node (nodeId, clients, events) and what it refuses.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import mqtt from 'mqtt'
import { Broker, MemoryPersistence, tcp, type Listener } from '../../src/index.js'
import { skipRedis, startRedis, type RedisServer } from '../helpers/redis-server.js'

describe('cluster mode, embedded', { skip: skipRedis() }, () => {
  let redis: RedisServer
  before(async () => {
    redis = await startRedis()
  })
  after(() => redis?.dispose())

  test('cluster and persistence together are refused at construction, naming both', () => {
    assert.throws(() => new Broker({ cluster: { redis: redis.url, nodeId: 'x' }, persistence: new MemoryPersistence() }), /cluster and persistence cannot both be given/)
    assert.throws(() => new Broker({ cluster: { redis: redis.url, nodeId: 'a b' } }), /cluster\.nodeId must be/)
    assert.throws(() => new Broker({ cluster: { redis: redis.url, leaseMs: 10 } }), /cluster\.leaseMs must be/)
  })

  test('each broker names its node; clients and events are those of its own node; a message crosses', async (t) => {
    const a = new Broker({ cluster: { redis: redis.url, nodeId: 'emb-a', prefix: 'emb1' } })
    const b = new Broker({ cluster: { redis: redis.url, nodeId: 'emb-b', prefix: 'emb1' } })
    t.after(() => Promise.all([a.close(), b.close()]))
    assert.equal(a.nodeId, 'emb-a')
    assert.equal(b.nodeId, 'emb-b')
    assert.equal(new Broker().nodeId, undefined)
    const listenA: Listener = await a.listen(tcp({ port: 0, host: '127.0.0.1' }))
    const connectsOnB: string[] = []
    b.on('clientConnect', (client) => connectsOnB.push(client.id))
    const publishesOnB: string[] = []
    b.on('publish', (message) => publishesOnB.push(message.topic))
    let resolveGot: (payload: string) => void = () => {}
    const got = new Promise<string>((resolve) => (resolveGot = resolve))
    // Resolves once node B's subscription is known cluster-wide: a publish from A then reaches it.
    await b.subscribe('embedded/#', (message) => resolveGot(message.payload.toString()))
    const port = (listenA.address() as { port: number }).port
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'emb-client', reconnectPeriod: 0 })
    t.after(() => client.endAsync())
    await client.publishAsync('embedded/x', 'over', { qos: 1 })
    assert.equal(await got, 'over')
    assert.deepEqual(
      a.clients.map((c) => c.id),
      ['emb-client'],
    )
    assert.deepEqual(b.clients, [])
    assert.deepEqual(connectsOnB, [])
    // The publish event fires where the message was published, not where it was delivered.
    assert.deepEqual(publishesOnB, [])
  })

  test('a second broker with the node id of a live one fails to start, naming the id', async (t) => {
    const a = new Broker({ cluster: { redis: redis.url, nodeId: 'dup', prefix: 'emb2', leaseMs: 1000 } })
    t.after(() => a.close())
    await a.listen(tcp({ port: 0, host: '127.0.0.1' }))
    const b = new Broker({ cluster: { redis: redis.url, nodeId: 'dup', prefix: 'emb2', leaseMs: 1000 } })
    await assert.rejects(b.listen(tcp({ port: 0, host: '127.0.0.1' })), /node id "dup" is held by a live node/)
    await b.close()
  })
})
