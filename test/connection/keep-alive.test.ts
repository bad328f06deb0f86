/**
 * Keep alive over real sockets [MQTT-3.1.2-24]: a client silent for 1.5 × its keep alive is
 * disconnected, on time; PINGREQ is answered and keeps the connection up; 0 disables the check.
 * The broker's clock is mocked (helpers/timers.ts): each test moves it on by hand, and a timeout
 * due fires inside that `tick`, so the tests check the exact instant, whatever the machine's speed.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Client, DisconnectReason, Message } from '../../src/index.js'
import {
  connect,
  connectAccepted,
  decodeAll,
  mockClock,
  once,
  ping,
  PINGREQ,
  PINGRESP,
  publish,
  until,
  withBroker,
  type MockClock,
  type RawMqtt,
  type TestBroker,
} from '../helpers/index.js'

/** keepAlive 1 s: the broker must close once 1.5 s have passed without a packet. */
const LIMIT_MS = 1500

/** Whether the broker has dropped client `id` yet: it does so inside the tick that reaches the limit. */
function watchGone(b: TestBroker, id: string): () => boolean {
  let gone = false
  b.broker.on('clientDisconnect', (client) => {
    if (client.id === id) gone = true
  })
  return () => gone
}

/**
 * Every `everyMs` of mocked time for `forMs`: checks the client is still connected, then sends
 * `send()` and waits until the broker has handled it (`handled`). Returns how many were sent.
 */
async function keepSending(clock: MockClock, gone: () => boolean, everyMs: number, forMs: number, send: (n: number) => Promise<void>): Promise<number> {
  let sent = 0
  for (let elapsed = everyMs; elapsed <= forMs; elapsed += everyMs) {
    clock.tick(everyMs)
    assert.equal(gone(), false, `closed after ${sent} keep-alive packets`)
    await send(++sent)
  }
  return sent
}

describe('keep alive', () => {
  test('a silent client is disconnected 1.5 × keep alive after its CONNECT', async (t) => {
    // [MQTT-3.1.2-24] no control packet within 1.5 × keep alive: the server MUST disconnect
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const reason = once<[unknown, DisconnectReason]>(b.broker, 'clientDisconnect')
      const gone = watchGone(b, 'silent')
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'silent', keepAlive: 1 }))
      clock.tick(LIMIT_MS - 1)
      assert.equal(gone(), false, 'closed before 1.5 s after the last packet')
      clock.tick(1)
      assert.equal(gone(), true, 'not closed 1.5 s after the last packet')
      await raw.waitClosed()
      assert.equal(raw.received.length, 4, 'nothing but the CONNACK')
      assert.equal((await reason)[1], 'keep-alive-timeout')
    })
  })

  test('the 1.5 × keep alive is counted from the last packet, not from CONNECT', async (t) => {
    // [MQTT-3.1.2-24] the period runs from the last control packet received
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const gone = watchGone(b, 'late-ping')
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'late-ping', keepAlive: 1 }))
      clock.tick(800)
      raw.write(PINGREQ)
      await raw.waitBytes(6) // the PINGRESP: the broker has seen the PINGREQ, at 800 ms
      clock.tick(LIMIT_MS - 1)
      assert.equal(gone(), false, 'closed before 1.5 s after the last packet (a PINGREQ)')
      clock.tick(1)
      assert.equal(gone(), true, 'not closed 1.5 s after the last packet')
      await raw.waitClosed()
      assert.deepEqual(raw.received.subarray(4), PINGRESP, 'the PINGREQ was answered')
    })
  })

  test('PINGREQ is answered with PINGRESP (D0 00) and pings keep the connection alive', async (t) => {
    // [MQTT-3.12.4-1] the server MUST send PINGRESP in response to PINGREQ; [MQTT-3.1.2-24]
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const gone = watchGone(b, 'pinger')
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'pinger', keepAlive: 1 }))
      raw.write(PINGREQ)
      await raw.waitBytes(6)
      assert.deepEqual([...raw.received.subarray(4, 6)], [0xd0, 0x00])

      const sent =
        1 +
        (await keepSending(clock, gone, 500, 2500, async (n) => {
          raw.write(PINGREQ)
          await raw.waitBytes(4 + 2 * (n + 1))
        }))
      assert.equal(gone(), false, 'still connected 2.5 s (> 1.5 × keep alive) after CONNECT')
      assert.equal(raw.closed, false)
      assert.deepEqual(raw.received.subarray(4), Buffer.concat(Array.from({ length: sent }, () => PINGRESP)))
    })
  })

  test('any control packet, not only PINGREQ, keeps the connection alive', async (t) => {
    // [MQTT-3.1.2-24] "does not receive a Control Packet": a PUBLISH counts
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      // An in-process subscriber shows when the broker has handled each QoS 0 PUBLISH (which
      // gets no answer on the wire).
      const routed: Message[] = []
      await b.broker.subscribe('ka/data', (m) => void routed.push(m))
      const gone = watchGone(b, 'publisher')
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'publisher', keepAlive: 1 }))
      await keepSending(clock, gone, 500, 2500, async (n) => {
        raw.write(publish('ka/data', 'tick'))
        await until(() => routed.length === n, undefined, `PUBLISH ${n} handled`)
      })
      assert.equal(gone(), false)
      assert.equal(raw.closed, false)
      assert.equal(raw.received.length, 4, 'nothing sent back for QoS 0 PUBLISH')
    })
  })

  test('an mqtt client with keepalive 1 stays connected past 1.5 s (its pings are answered)', async (t) => {
    // [MQTT-3.1.2-23] the client sends PINGREQ when idle; [MQTT-3.12.4-1] the server answers.
    // The client pings on its own (real) clock; the broker's mocked clock moves on 1 s after each
    // answered ping, so the broker sees a ping per second, past 1.5 s.
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const gone = watchGone(b, 'mqtt-pinger')
      const client = await b.connect({ clientId: 'mqtt-pinger', keepalive: 1 })
      let closed = false
      client.on('close', () => {
        closed = true
      })
      let pingresps = 0
      client.on('packetreceive', (packet) => {
        if (packet.cmd === 'pingresp') pingresps++
      })
      for (let ping = 1; ping <= 2; ping++) {
        await until(() => pingresps >= ping, undefined, `the client's PINGREQ ${ping} answered`)
        clock.tick(1000)
        assert.equal(gone(), false, `closed ${ping} s after CONNECT`)
      }
      // A PINGREQ answered now: the connection is still up, and anything closing it would have come first.
      await ping(client)
      assert.equal(closed, false)
      assert.equal(client.connected, true)
    })
  })

  test('keep alive 0 disables the check: a silent client is not closed', async (t) => {
    // [MQTT-3.1.2-10] section 3.1.2.10: a keep alive of zero turns the mechanism off
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const gone = watchGone(b, 'no-keep-alive')
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'no-keep-alive', keepAlive: 0 }))
      clock.tick(60 * 60 * 1000)
      assert.equal(gone(), false, 'still connected after an hour of silence')
      raw.write(PINGREQ)
      await raw.waitBytes(6)
      assert.equal(raw.closed, false)
      assert.deepEqual(raw.received.subarray(4), PINGRESP)
    })
  })

  test('the will is published when the keep alive times out', async (t) => {
    // [MQTT-3.1.2-8] the will MUST be published when the connection is closed other than by
    // DISCONNECT; section 3.1.2.5 lists "failure to communicate within the Keep Alive time"
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const watcher = await b.connect({ clientId: 'will-watcher' })
      await watcher.subscribeAsync('will/keep-alive', { qos: 1 })
      const got = once<[string, Buffer, { qos: number; retain: boolean }]>(watcher, 'message')
      const wills: Array<[Message, Client]> = []
      b.broker.on('willPublish', (message, client) => void wills.push([message, client]))

      const raw: RawMqtt = await b.raw()
      await connectAccepted(
        raw,
        connect({ clientId: 'will-ka', keepAlive: 1, will: { topic: 'will/keep-alive', payload: Buffer.from('gone'), qos: 1, retain: false } }),
      )
      clock.tick(LIMIT_MS - 1)
      assert.equal(wills.length, 0, 'will published before 1.5 s after the last packet')
      clock.tick(1)
      assert.equal(wills.length, 1, 'will not published 1.5 s after the last packet')
      const [topic, payload, packet] = await got
      assert.equal(topic, 'will/keep-alive')
      assert.equal(payload.toString(), 'gone')
      assert.equal(packet.qos, 1)
      const [message, client] = wills[0] as [Message, Client]
      assert.equal(message.topic, 'will/keep-alive')
      assert.equal(client.id, 'will-ka')
      await raw.waitClosed()
      assert.deepEqual(decodeAll(raw.received).map((p) => p.type), ['connack'])
    })
  })
})
