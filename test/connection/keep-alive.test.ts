/**
 * Keep alive over real sockets [MQTT-3.1.2-24]: a client silent for 1.5 × its keep alive is
 * disconnected, on time; PINGREQ is answered and keeps the connection up; 0 disables the check.
 * The tests run concurrently: each waits a second or two, mostly idle.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { DisconnectReason } from '../../src/index.js'
import { delay, once, withBroker, type RawClient } from '../helpers.js'
import { connect, connectAccepted, decodeAll, PINGREQ, PINGRESP, publish } from './raw.js'

/** keepAlive 1 s: the broker must close after 1.5 s of silence; under 2 s tells 1.5x from 2x, with slack for a busy machine. */
const MIN_MS = 1400
const MAX_MS = 1950

/** Sends PINGREQ every `everyMs` for `forMs`; returns how many were sent. */
async function keepPinging(raw: RawClient, everyMs: number, forMs: number, bytes: Buffer = PINGREQ): Promise<number> {
  let sent = 0
  const until = Date.now() + forMs
  while (Date.now() < until) {
    await delay(everyMs)
    assert.equal(raw.closed, false, `closed after ${sent} keep-alive packets`)
    raw.write(bytes)
    sent++
  }
  return sent
}

describe('keep alive', { concurrency: true }, () => {
  test('a silent client is disconnected 1.5 × keep alive after its CONNECT', async () => {
    // [MQTT-3.1.2-24] no control packet within 1.5 × keep alive: the server MUST disconnect
    await withBroker({}, async (b) => {
      const reason = once<[unknown, DisconnectReason]>(b.broker, 'clientDisconnect', 5000)
      const raw = await b.raw()
      const lastPacket = Date.now()
      await connectAccepted(raw, connect({ clientId: 'silent', keepAlive: 1 }))
      await raw.waitClosed(5000)
      const elapsed = Date.now() - lastPacket
      assert.ok(elapsed >= MIN_MS, `closed ${elapsed} ms after the last packet, before 1.5 s`)
      assert.ok(elapsed < MAX_MS, `closed ${elapsed} ms after the last packet, not on time`)
      assert.equal(raw.received.length, 4, 'nothing but the CONNACK')
      assert.equal((await reason)[1], 'keep-alive-timeout')
    })
  })

  test('the 1.5 × keep alive is counted from the last packet, not from CONNECT', async () => {
    // [MQTT-3.1.2-24] the period runs from the last control packet received
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'late-ping', keepAlive: 1 }))
      await delay(800)
      raw.write(PINGREQ)
      const lastPacket = Date.now()
      await raw.waitClosed(5000)
      const elapsed = Date.now() - lastPacket
      assert.ok(elapsed >= MIN_MS, `closed ${elapsed} ms after the last packet (a PINGREQ), before 1.5 s`)
      assert.ok(elapsed < MAX_MS, `closed ${elapsed} ms after the last packet, not on time`)
      assert.deepEqual(raw.received.subarray(4), PINGRESP, 'the PINGREQ was answered')
    })
  })

  test('PINGREQ is answered with PINGRESP (D0 00) and pings keep the connection alive', async () => {
    // [MQTT-3.12.4-1] the server MUST send PINGRESP in response to PINGREQ; [MQTT-3.1.2-24]
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'pinger', keepAlive: 1 }))
      raw.write(PINGREQ)
      await raw.waitBytes(6)
      assert.deepEqual([...raw.received.subarray(4, 6)], [0xd0, 0x00])

      const sent = 1 + (await keepPinging(raw, 500, 2500))
      await raw.waitBytes(4 + 2 * sent)
      assert.equal(raw.closed, false, 'still connected 2.5 s (> 1.5 × keep alive) after CONNECT')
      assert.deepEqual(raw.received.subarray(4), Buffer.concat(Array.from({ length: sent }, () => PINGRESP)))
    })
  })

  test('any control packet, not only PINGREQ, keeps the connection alive', async () => {
    // [MQTT-3.1.2-24] "does not receive a Control Packet": a PUBLISH counts
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'publisher', keepAlive: 1 }))
      await keepPinging(raw, 500, 2500, publish('ka/data', 'tick'))
      assert.equal(raw.closed, false)
      assert.equal(raw.received.length, 4, 'nothing sent back for QoS 0 PUBLISH')
    })
  })

  test('an mqtt client with keepalive 1 stays connected past 1.5 s (its pings are answered)', async () => {
    // [MQTT-3.1.2-23] the client sends PINGREQ when idle; [MQTT-3.12.4-1] the server answers
    await withBroker({}, async (b) => {
      const client = await b.connect({ clientId: 'mqtt-pinger', keepalive: 1 })
      let closed = false
      client.on('close', () => {
        closed = true
      })
      await delay(2500)
      assert.equal(closed, false)
      assert.equal(client.connected, true)
    })
  })

  test('keep alive 0 disables the check: a silent client is not closed', async () => {
    // [MQTT-3.1.2-10] section 3.1.2.10: a keep alive of zero turns the mechanism off
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'no-keep-alive', keepAlive: 0 }))
      await delay(2000)
      assert.equal(raw.closed, false, 'still connected after 2 s of silence')
      raw.write(PINGREQ)
      await raw.waitBytes(6)
      assert.deepEqual(raw.received.subarray(4), PINGRESP)
    })
  })

  test('the will is published when the keep alive times out', async () => {
    // [MQTT-3.1.2-8] the will MUST be published when the connection is closed other than by
    // DISCONNECT; section 3.1.2.5 lists "failure to communicate within the Keep Alive time"
    await withBroker({}, async (b) => {
      const watcher = await b.connect({ clientId: 'will-watcher' })
      await watcher.subscribeAsync('will/keep-alive', { qos: 1 })
      const got = once<[string, Buffer, { qos: number; retain: boolean }]>(watcher, 'message', 5000)
      const willEvent = once<[{ topic: string }, { id: string }]>(b.broker, 'willPublish', 5000)

      const raw = await b.raw()
      const lastPacket = Date.now()
      await connectAccepted(
        raw,
        connect({ clientId: 'will-ka', keepAlive: 1, will: { topic: 'will/keep-alive', payload: Buffer.from('gone'), qos: 1, retain: false } }),
      )
      const [topic, payload, packet] = await got
      const elapsed = Date.now() - lastPacket
      assert.equal(topic, 'will/keep-alive')
      assert.equal(payload.toString(), 'gone')
      assert.equal(packet.qos, 1)
      assert.ok(elapsed >= MIN_MS, `will published ${elapsed} ms after the last packet, before 1.5 s`)
      assert.ok(elapsed < MAX_MS, `will published ${elapsed} ms after the last packet, not on time`)
      const [message, client] = await willEvent
      assert.equal(message.topic, 'will/keep-alive')
      assert.equal(client.id, 'will-ka')
      await raw.waitClosed()
      assert.deepEqual(decodeAll(raw.received).map((p) => p.type), ['connack'])
    })
  })
})
