import assert from 'node:assert/strict'
import { test } from 'node:test'
import { once, startBroker } from '../helpers/index.js'

test('a client receives what another publishes, at QoS 0, 1 and 2', async () => {
  const b = await startBroker()
  try {
    const sub = await b.connect({ clientId: 'sub' })
    const pub = await b.connect({ clientId: 'pub' })
    await sub.subscribeAsync('a/+/c', { qos: 2 })
    for (const qos of [0, 1, 2] as const) {
      const got = once<[string, Buffer]>(sub, 'message')
      await pub.publishAsync('a/b/c', `hello ${qos}`, { qos })
      const [topic, payload] = await got
      assert.equal(topic, 'a/b/c')
      assert.equal(payload.toString(), `hello ${qos}`)
    }
  } finally {
    await b.close()
  }
})
