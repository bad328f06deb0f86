/**
 * examples/cluster.ts: two nodes in one script, one test-started redis-server; the example's own
 * message crosses from node A to node B, then an MQTT client on node A hears one published on
 * node B.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { skipRedis, startRedis } from '../helpers/redis-server.js'
import { runExample } from './run-example.js'

test('examples/cluster.ts: a message published on one node reaches subscribers on the other, both ways', { skip: skipRedis() }, async (t) => {
  const redis = await startRedis()
  t.after(() => redis.dispose())
  const example = runExample('cluster.ts', { REDIS_URL: redis.url, PORT_A: '0', PORT_B: '0' })
  try {
    await example.waitFor(/node-b got hello from node-a on greetings\/world/)
    const portA = Number((await example.waitFor(/node-a listening on port (\d+)/))[1])
    const portB = Number((await example.waitFor(/node-b listening on port (\d+)/))[1])
    const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${portA}`, { clientId: 'example-sub', reconnectPeriod: 0 })
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${portB}`, { clientId: 'example-pub', reconnectPeriod: 0 })
    try {
      const received = new Promise<string>((resolve) => subscriber.on('message', (topic, payload) => resolve(`${topic} ${payload.toString()}`)))
      await subscriber.subscribeAsync('news/#', { qos: 1 })
      await publisher.publishAsync('news/today', 'crossed', { qos: 1 })
      assert.equal(await received, 'news/today crossed')
    } finally {
      await Promise.all([subscriber.endAsync(), publisher.endAsync()])
    }
  } finally {
    assert.equal(await example.stop(), 0)
  }
})
