/** MQTT 5 outbound topic aliases: the broker shortens repeated long topics for clients that allow it. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Properties } from '../../src/protocol/packets.js'
import { startBroker, type RawMqtt, type TestBroker } from '../helpers/index.js'

/** A raw MQTT 5 client connected with `connectProperties` and subscribed to 'sensors/#'. */
async function rawV5(b: TestBroker, connectProperties: Properties): Promise<RawMqtt> {
  const { raw } = await b.rawConnect({ clientId: `alias-${Object.keys(connectProperties).length}`, properties: connectProperties }, 5)
  await raw.subscribe([{ topicFilter: 'sensors/#', qos: 0 }])
  return raw
}

/** Waits until `raw` has received `n` PUBLISHes. */
function publishes(raw: RawMqtt, n: number): Promise<void> {
  return raw.until(() => raw.publishes().length >= n, undefined, () => `${n} PUBLISHes; got ${raw.describe()}`)
}

test('a client with Topic Alias Maximum gets the topic once, then only the alias', async () => {
  const b = await startBroker()
  try {
    const raw = await rawV5(b, { topicAliasMaximum: 5 })
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 3; i++) await pub.publishAsync('sensors/kitchen/temperature', `${i}`)
    await publishes(raw, 3)
    const [first, second, third] = raw.publishes()
    // [MQTT-3.3.2-10] [MQTT-3.3.2-12] the first carries topic and alias, later ones the alias alone
    assert.equal(first?.topic, 'sensors/kitchen/temperature')
    assert.equal(first?.properties?.topicAlias, 1)
    assert.equal(second?.topic, '')
    assert.equal(second?.properties?.topicAlias, 1)
    assert.equal(third?.payload.toString(), '2')
    raw.destroy()
  } finally {
    await b.close()
  }
})

test('a client without Topic Alias Maximum never gets an alias', async () => {
  const b = await startBroker()
  try {
    const raw = await rawV5(b, {})
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 2; i++) await pub.publishAsync('sensors/kitchen/temperature', `${i}`)
    await publishes(raw, 2)
    for (const p of raw.publishes()) {
      assert.equal(p.topic, 'sensors/kitchen/temperature')
      assert.equal(p.properties?.topicAlias, undefined)
    }
    raw.destroy()
  } finally {
    await b.close()
  }
})

test('short topics get aliases too, from 4 characters (an alias costs 3 bytes)', async () => {
  const b = await startBroker()
  try {
    const raw = await rawV5(b, { topicAliasMaximum: 2 })
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 2; i++) await pub.publishAsync('sensors', `${i}`)
    await publishes(raw, 2)
    const received = raw.publishes()
    assert.equal(received[1]?.topic, '')
    assert.equal(received[1]?.properties?.topicAlias, 1)
    raw.destroy()
  } finally {
    await b.close()
  }
})
