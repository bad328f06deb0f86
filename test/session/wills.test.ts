/**
 * Will messages (MQTT 3.1.1 section 3.1.2.5): published with their QoS and retain flag whenever a
 * connection ends without DISCONNECT (socket lost, protocol violation, takeover, keep-alive
 * timeout, closed by the host), never after DISCONNECT, and subject to `authorizePublish`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryPersistence, type BrokerOptions, type Client, type Message } from '../../src/index.js'
import type { QoS, WillMessage } from '../../src/protocol/packets.js'
import { disconnected, Inbox, mockClock, once, RawMqtt, storedRetained, withBroker, type TestBroker } from '../helpers/index.js'

/** Connects an `mqtt` client subscribed to `filter` at QoS 2; its inbox records what it receives. */
async function watch(b: TestBroker, filter = 'will/#'): Promise<Inbox> {
  const client = await b.connect({ clientId: `watcher-${Math.random().toString(36).slice(2)}` })
  const inbox = new Inbox(client)
  await client.subscribeAsync(filter, { qos: 2 })
  return inbox
}

/** A raw client connected (3.1.1, clean session) with `will` and `keepAlive`. */
async function connectVictim(b: TestBroker, clientId: string, will: WillMessage | undefined, keepAlive = 0): Promise<RawMqtt> {
  return (await RawMqtt.connect(b, { clientId, will, keepAlive })).peer
}

function will(topic: string, payload: string, qos: QoS, retain = false): WillMessage {
  return { topic, payload: Buffer.from(payload), qos, retain }
}

/** Records `willPublish` events. */
function recordWills(b: TestBroker): Array<[Message, Client]> {
  const wills: Array<[Message, Client]> = []
  b.broker.on('willPublish', (message, client) => wills.push([message, client]))
  return wills
}

// Section 3.1.2.5: "Situations in which the Will Message is published include, but are not limited
// to: an I/O error or network failure detected by the Server; the Client fails to communicate within
// the Keep Alive time; the Client closes the Network Connection without first sending a DISCONNECT
// Packet; the Server closes the Network Connection because of a protocol error."
describe('wills are published when a connection ends without DISCONNECT', () => {
  it('when the socket is destroyed, with the will QoS 2 and retain 0', async () => {
    // [MQTT-3.1.2-8] the will is published when the network connection is closed (not by DISCONNECT);
    // 3.1.2.6: the will QoS is the QoS it is published with.
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      const victim = await connectVictim(b, 'w-socket', will('will/socket', 'lost', 2))
      victim.raw.socket.destroy()
      const got = await watcher.waitForTopic('will/socket')
      assert.deepEqual(got, { topic: 'will/socket', payload: 'lost', qos: 2, retain: false, dup: false })
    })
  })

  it('when the client breaks the protocol (garbage bytes), with the will QoS 1', async () => {
    // [MQTT-3.1.2-8]; 3.1.2.5 "the Server closes the Network Connection because of a protocol error".
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      const victim = await connectVictim(b, 'w-garbage', will('will/garbage', 'malformed', 1))
      const gone = disconnected(b, 'w-garbage')
      victim.raw.write([0x00, 0x00, 0xff, 0xff]) // packet type 0 is reserved [MQTT-2.2.2-2]
      await victim.raw.waitClosed()
      assert.equal((await gone)[1], 'protocol-error')
      const got = await watcher.waitForTopic('will/garbage')
      assert.deepEqual(got, { topic: 'will/garbage', payload: 'malformed', qos: 1, retain: false, dup: false })
    })
  })

  it('when another connection takes over the client id', async () => {
    // [MQTT-3.1.4-2] the existing connection is closed by the server, without DISCONNECT from the
    // client, so [MQTT-3.1.2-8] its will is published.
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      const wills = recordWills(b)
      const victim = await connectVictim(b, 'w-twin', will('will/twin', 'replaced', 0))
      const gone = disconnected(b, 'w-twin')
      await connectVictim(b, 'w-twin', undefined)
      await victim.raw.waitClosed()
      assert.equal((await gone)[1], 'taken-over')
      const got = await watcher.waitForTopic('will/twin')
      assert.deepEqual(got, { topic: 'will/twin', payload: 'replaced', qos: 0, retain: false, dup: false })
      assert.equal(wills.length, 1, 'only the first connection had a will')
    })
  })

  it('when the keep alive runs out (keep alive 1: after 1.5 s)', async (t) => {
    // [MQTT-3.1.2-24] the server disconnects a client silent for 1.5 x keep alive; 3.1.2.5 the will
    // is published when "the Client fails to communicate within the Keep Alive time".
    // The broker's clock is mocked: the timeout fires inside the tick that reaches 1.5 s.
    const clock = mockClock(t)
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      await connectVictim(b, 'w-silent', will('will/silent', 'timed out', 1), 1)
      const left = disconnected(b, 'w-silent')
      let gone = false
      b.broker.on('clientDisconnect', (client) => {
        if (client.id === 'w-silent') gone = true
      })
      clock.tick(1499)
      assert.equal(gone, false, 'disconnected before 1.5 s of silence')
      clock.tick(1)
      const [, reason] = await left
      assert.equal(reason, 'keep-alive-timeout')
      const got = await watcher.waitForTopic('will/silent')
      assert.deepEqual(got, { topic: 'will/silent', payload: 'timed out', qos: 1, retain: false, dup: false })
    })
  })

  it('when the host closes the client with client.close()', async () => {
    // Issue 2 / the Client API: `close()` ends the connection as any ungraceful end does, so
    // [MQTT-3.1.2-8] the will is published.
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      let victimClient: Client | undefined
      b.broker.on('clientConnect', (c) => {
        if (c.id === 'w-host') victimClient = c
      })
      const victim = await connectVictim(b, 'w-host', will('will/host', 'kicked', 2))
      assert.ok(victimClient)
      const gone = disconnected(b, 'w-host')
      victimClient.close()
      await victim.raw.waitClosed()
      assert.equal((await gone)[1], 'closed-by-host')
      const got = await watcher.waitForTopic('will/host')
      assert.deepEqual(got, { topic: 'will/host', payload: 'kicked', qos: 2, retain: false, dup: false })
    })
  })
})

describe('wills are not published', () => {
  it('after a DISCONNECT, even when the socket then closes', async () => {
    // [MQTT-3.1.2-10] the will is removed on receipt of DISCONNECT; [MQTT-3.14.4-3] on DISCONNECT
    // the server discards the will without publishing it.
    await withBroker({}, async (b) => {
      const watcher = await watch(b)
      const wills = recordWills(b)
      const victim = await connectVictim(b, 'w-polite', will('will/polite', 'never', 1))
      const gone = disconnected(b, 'w-polite')
      victim.send({ type: 'disconnect' })
      victim.raw.socket.destroy()
      assert.equal((await gone)[1], 'disconnect')
      // A marker published after the disconnect reaches the watcher; a will would have come first.
      await b.broker.publish({ topic: 'will/marker', payload: 'after', qos: 1 })
      await watcher.waitForTopic('will/marker')
      assert.deepEqual(
        watcher.messages.map((m) => m.topic),
        ['will/marker'],
      )
      assert.deepEqual(wills, [])
    })
  })

  it('when authorizePublish refuses the will topic', async () => {
    // Issue 2: authorizePublish "applies to will messages too".
    const asked: Array<[string, string]> = []
    const options: BrokerOptions = {
      authorizePublish: (client, message) => {
        asked.push([client.id, message.topic])
        return message.topic !== 'will/forbidden'
      },
    }
    await withBroker(options, async (b) => {
      const watcher = await watch(b)
      const wills = recordWills(b)
      const refused = await connectVictim(b, 'w-refused', will('will/forbidden', 'nope', 1))
      const allowed = await connectVictim(b, 'w-allowed', will('will/allowed', 'yes', 1))
      let gone = disconnected(b, 'w-refused')
      refused.raw.socket.destroy()
      await gone
      gone = disconnected(b, 'w-allowed')
      allowed.raw.socket.destroy()
      await gone
      // The allowed will, sent after the refused one, arrives; the refused one never does.
      await watcher.waitForTopic('will/allowed')
      assert.deepEqual(
        watcher.messages.map((m) => m.topic),
        ['will/allowed'],
      )
      assert.deepEqual(asked, [
        ['w-refused', 'will/forbidden'],
        ['w-allowed', 'will/allowed'],
      ])
      assert.deepEqual(
        wills.map(([m]) => m.topic),
        ['will/allowed'],
      )
    })
  })
})

describe('will details', () => {
  it('a will with retain 1 is stored as a retained message', async () => {
    // [MQTT-3.1.2-17] if Will Retain is 1 the server publishes the will as a retained message;
    // [MQTT-3.3.1-8] a new subscriber then receives it with RETAIN 1.
    const persistence = new MemoryPersistence()
    await withBroker({ persistence }, async (b) => {
      const watcher = await watch(b)
      const victim = await connectVictim(b, 'w-retained', will('will/retained', 'last words', 1, true))
      victim.raw.socket.destroy()
      const live = await watcher.waitForTopic('will/retained')
      // [MQTT-3.3.1-9] forwarded to an existing subscriber with RETAIN 0.
      assert.equal(live.retain, false)

      const stored = await storedRetained(persistence, 'will/retained')
      assert.equal(stored.length, 1)
      assert.equal(stored[0]?.payload.toString(), 'last words')
      assert.equal(stored[0]?.qos, 1)

      const late = await watch(b, 'will/retained')
      const got = await late.waitForTopic('will/retained')
      assert.deepEqual(got, { topic: 'will/retained', payload: 'last words', qos: 1, retain: true, dup: false })
    })
  })

  it('a will with retain 0 is not stored as retained', async () => {
    // [MQTT-3.1.2-16] Will Retain 0: the will is published as a non-retained message.
    const persistence = new MemoryPersistence()
    await withBroker({ persistence }, async (b) => {
      const watcher = await watch(b)
      const victim = await connectVictim(b, 'w-plain', will('will/plain', 'gone', 1, false))
      victim.raw.socket.destroy()
      await watcher.waitForTopic('will/plain')
      assert.deepEqual(await storedRetained(persistence, 'will/plain'), [])
    })
  })

  it('willPublish fires with the message and the client that left', async () => {
    // Issue 2: typed event `willPublish(message, client)`.
    await withBroker({}, async (b) => {
      let victimClient: Client | undefined
      b.broker.on('clientConnect', (c) => {
        if (c.id === 'w-event') victimClient = c
      })
      const fired = once<[Message, Client]>(b.broker, 'willPublish')
      const victim = await connectVictim(b, 'w-event', will('will/event', 'payload', 2, true))
      victim.raw.socket.destroy()
      const [message, client] = await fired
      assert.equal(message.topic, 'will/event')
      assert.equal(message.payload.toString(), 'payload')
      assert.equal(message.qos, 2)
      assert.equal(message.retain, true)
      assert.ok(victimClient)
      assert.equal(client, victimClient)
      assert.equal(client.id, 'w-event')
    })
  })
})
