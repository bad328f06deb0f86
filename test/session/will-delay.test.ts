/**
 * MQTT 5 wills: Will Delay Interval, cancellation by reconnecting, and will properties.
 * The broker's clock is mocked: a delayed will is published inside the tick that reaches its
 * delay, and `at` below is the mocked time.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { IClientOptions, MqttClient } from 'mqtt'
import { disconnected, mockClock, ping, startBroker, until, type TestBroker } from '../helpers/index.js'

interface Got {
  topic: string
  at: number
  properties: Record<string, unknown> | undefined
}

/** A subscriber to 'wills/#' at QoS 0, so `ping(client)` fences what it was sent. */
async function watcher(b: TestBroker): Promise<{ got: Got[]; client: MqttClient }> {
  const got: Got[] = []
  const w = await b.connect({ clientId: 'watcher', protocolVersion: 5 })
  w.on('message', (topic, _payload, packet) => got.push({ topic, at: Date.now(), properties: packet.properties as Record<string, unknown> | undefined }))
  await w.subscribeAsync('wills/#')
  return { got, client: w }
}

function dying(id: string, willDelay: number, sessionExpiry: number): IClientOptions {
  return {
    clientId: id,
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: sessionExpiry },
    will: {
      topic: `wills/${id}`,
      payload: Buffer.from('gone'),
      qos: 1,
      retain: false,
      properties: { willDelayInterval: willDelay, contentType: 'text/plain', userProperties: { k: 'v' } },
    },
  }
}

test('a will with a delay is published after the delay, with its properties but not the delay', async (t) => {
  const clock = mockClock(t)
  const b = await startBroker()
  try {
    const { got, client: w } = await watcher(b)
    const client = await b.connect(dying('delayed', 1, 60))
    const left = disconnected(b, 'delayed')
    const lost = Date.now()
    client.stream.destroy()
    await left
    clock.tick(999)
    await ping(w)
    assert.equal(got.length, 0, 'published before its Will Delay Interval')
    clock.tick(1)
    await until(() => got.length > 0, undefined, 'the will')
    const will = got[0]
    assert.ok(will, 'the will was published')
    // [MQTT-3.1.3-9] published once the delay has passed
    assert.ok(will.at - lost >= 900, `published ${will.at - lost} ms after the connection was lost`)
    assert.equal(will.properties?.contentType, 'text/plain')
    assert.deepEqual({ ...(will.properties?.userProperties as object) }, { k: 'v' })
    assert.equal(will.properties?.willDelayInterval, undefined)
  } finally {
    await b.close()
  }
})

test('reconnecting within the Will Delay Interval cancels the will', async (t) => {
  const clock = mockClock(t)
  const b = await startBroker()
  try {
    const { got, client: w } = await watcher(b)
    const client = await b.connect(dying('returning', 1, 60))
    const left = disconnected(b, 'returning')
    client.stream.destroy()
    await left
    clock.tick(200)
    await b.connect({ clientId: 'returning', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60 } })
    clock.tick(1300)
    await ping(w)
    assert.deepEqual(got, [])
  } finally {
    await b.close()
  }
})

test('a will whose session ends with the connection is published at once, whatever its delay', async (t) => {
  mockClock(t) // and never moved on: the will must come without any timer
  const b = await startBroker()
  try {
    const { got } = await watcher(b)
    const client = await b.connect(dying('short-lived', 30, 0))
    const lost = Date.now()
    client.stream.destroy()
    await until(() => got.length > 0, undefined, 'the will')
    assert.equal(got[0]?.topic, 'wills/short-lived')
    assert.ok((got[0]?.at ?? Infinity) - lost < 900)
  } finally {
    await b.close()
  }
})
