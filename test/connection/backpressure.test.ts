/**
 * A client cannot make the broker buffer without bound: when a connection's write buffer is
 * over `limits.maxWriteBuffer` the broker stops reading that connection until it drains, and
 * one SUBSCRIBE cannot multiply retained deliveries or subscriptions past the limits.
 */
import assert from 'node:assert/strict'
import { Duplex, PassThrough } from 'node:stream'
import { test } from 'node:test'
import { Broker } from '../../src/index.js'
import { connect, Inbox, nextTurn, PINGREQ, startBroker, subackCodes, Waiters } from '../helpers/index.js'

/**
 * Waits until `value()` has stayed the same for `turns` event-loop turns in a row: for in-memory
 * streams with no timers involved, nothing more will move after that. Fails after `ms`.
 */
async function settled(value: () => number, turns = 5, ms = 10_000): Promise<number> {
  const deadline = performance.now() + ms
  let last = value()
  let still = 0
  while (still < turns) {
    if (performance.now() > deadline) throw new Error(`still moving after ${ms} ms (at ${value()})`)
    await nextTurn()
    const now = value()
    still = now === last ? still + 1 : 0
    last = now
  }
  return last
}

test('a client that does not read is not read either, once its answers fill the write buffer', async () => {
  const broker = new Broker({ limits: { maxWriteBuffer: 64 * 1024 } })
  // An in-memory connection shows exactly what the broker has read: what it has not stays in `toBroker`.
  const toBroker = new PassThrough({ highWaterMark: 16 * 1024 })
  const fromBroker = new PassThrough({ highWaterMark: 16 * 1024 })
  broker.handle(Duplex.from({ readable: toBroker, writable: fromBroker }))
  try {
    toBroker.write(connect({ clientId: 'no-reader', keepAlive: 0 }))
    const connack = await new Promise<Buffer>((resolve) => fromBroker.once('data', resolve))
    assert.equal(connack[0], 0x20)
    fromBroker.pause()
    // 1 MiB of PINGREQ in 16 KiB chunks, as a socket would deliver them: 1 MiB of PINGRESP the
    // client never reads.
    const chunk = Buffer.concat(Array.from({ length: 8 * 1024 }, () => PINGREQ))
    const pings = { length: 64 * chunk.length }
    for (let i = 0; i < 64; i++) toBroker.write(chunk)
    // Everything here is in memory: once nothing has moved for a few turns, the broker has read all it will.
    const unread = await settled(() => toBroker.writableLength + toBroker.readableLength)
    assert.ok(unread > pings.length / 2, `the broker read all but ${unread} bytes from a client that reads nothing`)
    // Reading again lets everything through: every PINGREQ is answered.
    let answered = 0
    const reading = new Waiters()
    fromBroker.on('data', (chunk: Buffer) => {
      answered += chunk.length
      reading.notify()
    })
    fromBroker.resume()
    await reading.until(() => answered >= pings.length, 20_000, () => `every PINGRESP (${answered} of ${pings.length} bytes)`)
    assert.equal(answered, pings.length)
  } finally {
    await broker.close()
  }
})

test('a filter repeated in one SUBSCRIBE gets its retained messages once', async () => {
  const b = await startBroker()
  try {
    for (const t of ['r/1', 'r/2', 'r/3']) await b.broker.publish({ topic: t, payload: t, retain: true })
    const client = await b.connect({ clientId: 'dup-filters' })
    const inbox = new Inbox(client)
    const received = (): string[] => inbox.messages.map((m) => m.topic)
    // [MQTT-3.8.4-3] each repeat replaces the previous subscription: one subscription, one set of retained messages
    assert.deepEqual(await subackCodes(client, { '#': { qos: 0 } }), [0])
    await inbox.waitCount(3) // the retained messages for '#'
    inbox.messages.length = 0
    await client.subscribeAsync(['r/#', 'r/#', 'r/#'])
    await client.publishAsync('marker', 'end')
    await inbox.waitForTopic('marker')
    assert.deepEqual(received().filter((t) => t.startsWith('r/')).sort(), ['r/1', 'r/2', 'r/3'])
  } finally {
    await b.close()
  }
})

test('limits.maxSubscriptionsPerClient refuses further filters with 0x80; replacing one still works', async () => {
  const b = await startBroker({ limits: { maxSubscriptionsPerClient: 2 } })
  try {
    const client = await b.connect({ clientId: 'many-subs' })
    assert.deepEqual(await subackCodes(client, { 'a/1': { qos: 1 }, 'a/2': { qos: 1 }, 'a/3': { qos: 1 } }), [1, 1, 0x80])
    assert.deepEqual(await subackCodes(client, { 'a/2': { qos: 0 } }), [0])
    await client.unsubscribeAsync('a/1')
    assert.deepEqual(await subackCodes(client, { 'a/3': { qos: 2 } }), [2])
  } finally {
    await b.close()
  }
})
