/**
 * MQTT 5 CONNECT/CONNACK and connection lifecycle over real sockets: capabilities advertised in
 * CONNACK, assigned client identifiers, Server Keep Alive, session expiry, the DISCONNECT reason
 * codes the server sends, authentication refusals and wills on DISCONNECT 0x04.
 * Normative references are to MQTT Version 5.0 (OASIS Standard, 7 March 2019).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { fence, gone, hex, leave, mockClock, TEST_TIMEOUT, until, withV5Broker } from '../helpers/index.js'

describe('MQTT 5 CONNACK capabilities', () => {
  test('CONNACK advertises Receive Maximum, Maximum Packet Size, Topic Alias Maximum and the availability flags; no Maximum QoS when 2', { timeout: TEST_TIMEOUT }, async () => {
    // Shared subscriptions are switched off here explicitly, so that CONNACK must say 0.
    // Section 3.2.2.3: Receive Maximum (3.2.2.3.3), Maximum Packet Size (3.2.2.3.6), Topic Alias
    // Maximum (3.2.2.3.8), Retain Available (3.2.2.3.5), Wildcard / Subscription Identifiers /
    // Shared Subscription Available (3.2.2.3.11 to .13). [MQTT-3.2.2-9] Maximum QoS is sent only
    // by a server that does not support QoS 1 or 2: absent means 2.
    const options = { limits: { receiveMaximum: 7, maxPacketSize: 4096, topicAliasMaximum: 3 }, capabilities: { sharedSubscriptionAvailable: false } }
    await withV5Broker(options, async (b) => {
      const { connack } = await b.mqtt({ clientId: 'caps' })
      const p = connack.properties ?? {}
      assert.equal(connack.reasonCode ?? 0, 0)
      assert.equal(p.receiveMaximum, 7, 'Receive Maximum = limits.receiveMaximum')
      assert.equal(p.maximumPacketSize, 4096, 'Maximum Packet Size = limits.maxPacketSize')
      assert.equal(p.topicAliasMaximum, 3, 'Topic Alias Maximum = limits.topicAliasMaximum')
      assert.equal(p.retainAvailable, true, 'Retain Available 1')
      assert.equal(p.wildcardSubscriptionAvailable, true, 'Wildcard Subscription Available 1')
      assert.equal(p.subscriptionIdentifiersAvailable, true, 'Subscription Identifiers Available 1')
      assert.equal(p.sharedSubscriptionAvailable, false, 'Shared Subscription Available 0')
      assert.equal(p.maximumQoS, undefined, 'no Maximum QoS when the broker supports QoS 2')
    })
  })

  test('the defaults are advertised: Receive Maximum 100, Maximum Packet Size 1 MiB, Topic Alias Maximum 10', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'defaults' })
      const p = connack.properties ?? {}
      assert.equal(p.receiveMaximum, 100)
      assert.equal(p.maximumPacketSize, 1024 * 1024)
      assert.equal(p.topicAliasMaximum, 10)
      // The raw bytes: each availability flag is a byte 1 or 0
      assert.equal(p.retainAvailable, 1)
      assert.equal(p.wildcardSubscriptionAvailable, 1)
      assert.equal(p.subscriptionIdentifiersAvailable, 1)
      assert.ok(p.sharedSubscriptionAvailable === 0 || p.sharedSubscriptionAvailable === 1, 'Shared Subscription Available is sent')
      assert.equal(p.maximumQoS, undefined)
      raw.destroy()
    })
  })

  test('each capability switched off is advertised as 0', { timeout: TEST_TIMEOUT }, async () => {
    const capabilities = { retainAvailable: false, wildcardSubscriptionAvailable: false, subscriptionIdentifiersAvailable: false, sharedSubscriptionAvailable: false }
    await withV5Broker({ capabilities }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'all-off' })
      const p = connack.properties ?? {}
      assert.equal(p.retainAvailable, 0)
      assert.equal(p.wildcardSubscriptionAvailable, 0)
      assert.equal(p.subscriptionIdentifiersAvailable, 0)
      assert.equal(p.sharedSubscriptionAvailable, 0)
      raw.destroy()
    })
  })

  test('capabilities.maximumQoS 1: CONNACK says Maximum QoS 1 and a QoS 2 PUBLISH gets DISCONNECT 0x9B', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-9] a server without QoS 2 sends Maximum QoS; [MQTT-3.2.2-11] the client must not
    // exceed it, and section 3.2.2.3.4: a PUBLISH above it is a Protocol Error, DISCONNECT 0x9B
    // (QoS not supported); [MQTT-4.13.1-1] the connection is then closed.
    await withV5Broker({ capabilities: { maximumQoS: 1 } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'qos-cap' })
      assert.equal(connack.properties?.maximumQoS, 1)
      // QoS 1 is fine
      raw.publish('cap/t', 'q1', 1, { packetId: 1 })
      const puback = await raw.take('puback')
      assert.equal(puback.packetId, 1)
      assert.ok((puback.reasonCode ?? 0) < 0x80, `PUBACK ${hex(puback.reasonCode)}`)
      // [MQTT-3.2.2-10] a SUBSCRIBE at QoS 2 is still accepted; [MQTT-3.8.4-7] granted at most 1
      const suback = await raw.subscribe([{ topicFilter: 'cap/#', qos: 2 }])
      assert.deepEqual(suback.reasonCodes, [1])
      raw.publish('cap/t', 'q2', 2, { packetId: 2 })
      await raw.expectDisconnect(0x9b)
    })
  })

  test('capabilities.maximumQoS 1: a will at QoS 2 is refused with CONNACK 0x9B', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-12] a Will QoS above the server's capabilities: CONNACK 0x9B and close
    await withV5Broker({ capabilities: { maximumQoS: 1 } }, async (b) => {
      const raw = await b.raw()
      const connack = await raw.connect({ clientId: 'will-qos', will: { topic: 'w/t', payload: Buffer.from('x'), qos: 2, retain: false } })
      assert.equal(hex(connack.returnCode), hex(0x9b))
      await raw.waitClosed()
    })
  })

  test('capabilities.retainAvailable false: a retained will gets CONNACK 0x9A and a retained PUBLISH gets DISCONNECT 0x9A', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-13] retained will without retain support: CONNACK 0x9A; [MQTT-3.2.2-14] the client
    // must not send RETAIN 1, and section 3.2.2.3.5: if it does, DISCONNECT 0x9A (Retain not supported)
    await withV5Broker({ capabilities: { retainAvailable: false } }, async (b) => {
      const refused = await b.raw()
      const connack = await refused.connect({ clientId: 'will-retain', will: { topic: 'w/t', payload: Buffer.from('x'), qos: 0, retain: true } })
      assert.equal(hex(connack.returnCode), hex(0x9a))
      await refused.waitClosed()
      const { raw, connack: ok } = await b.rawConnect({ clientId: 'retainer' })
      assert.equal(ok.properties?.retainAvailable, 0)
      raw.publish('r/t', 'plain', 1, { packetId: 1 })
      await raw.take('puback')
      raw.publish('r/t', 'kept?', 1, { packetId: 2, retain: true })
      await raw.expectDisconnect(0x9a)
    })
  })
})

describe('MQTT 5 Request Response Information', () => {
  test('Request Response Information 1 gets capabilities.responseInformation in CONNACK; 0 or absent gets none', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.2.2.3.15 Response Information; [MQTT-3.1.2-28] (Request Response Information 0:
    // the server must not return Response Information)
    await withV5Broker({ capabilities: { responseInformation: 'responses/' } }, async (b) => {
      const asked = await b.rawConnect({ clientId: 'asks', properties: { requestResponseInformation: 1 } })
      assert.equal(asked.connack.properties?.responseInformation, 'responses/')
      const notAsked = await b.rawConnect({ clientId: 'quiet', properties: { requestResponseInformation: 0 } })
      assert.equal(notAsked.connack.properties?.responseInformation, undefined)
      const silent = await b.rawConnect({ clientId: 'silent' })
      assert.equal(silent.connack.properties?.responseInformation, undefined)
    })
  })
})

describe('MQTT 5 Assigned Client Identifier', () => {
  for (const cleanStart of [true, false]) {
    test(`an empty client identifier with Clean Start ${cleanStart ? 1 : 0} is assigned one, returned in CONNACK`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.1.3-6] the server assigns a unique ClientID to a zero-length one (MQTT 5 allows it
      // whatever Clean Start says); [MQTT-3.1.3-7] and returns it as Assigned Client Identifier;
      // [MQTT-3.2.2-16] it is not used by any other session.
      await withV5Broker({}, async (b) => {
        const ids: string[] = []
        b.broker.on('clientConnect', (c) => ids.push(c.id))
        const first = await b.rawConnect({ clientId: '', cleanSession: cleanStart })
        const second = await b.rawConnect({ clientId: '', cleanSession: cleanStart })
        const a1 = first.connack.properties?.assignedClientIdentifier
        const a2 = second.connack.properties?.assignedClientIdentifier
        assert.equal(typeof a1, 'string')
        assert.ok(a1 !== undefined && a1.length > 0, 'a non-empty identifier')
        assert.ok(a2 !== undefined && a2.length > 0)
        assert.notEqual(a1, a2, 'two clients get two identifiers')
        await until(() => ids.length === 2)
        assert.deepEqual(ids, [a1, a2], 'the broker knows the clients by the identifiers it assigned')
        // Both connections are alive (no takeover between them)
        assert.equal(first.raw.closed, false)
        assert.equal(second.raw.closed, false)
        // A client that sent its own identifier is not told one
        const named = await b.rawConnect({ clientId: 'named' })
        assert.equal(named.connack.properties?.assignedClientIdentifier, undefined)
      })
    })
  }

  test('a session under an assigned identifier can be resumed with that identifier', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.1.3-7] the CONNECT is processed as if the client had provided the assigned ClientID
    await withV5Broker({}, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: '', cleanSession: false, properties: { sessionExpiryInterval: 30 } })
      const assigned = connack.properties?.assignedClientIdentifier as string
      assert.ok(assigned)
      const suback = await raw.subscribe([{ topicFilter: 'assigned/t', qos: 1 }])
      assert.deepEqual(suback.reasonCodes, [1])
      const left = gone(b, assigned)
      raw.send({ type: 'disconnect', reasonCode: 0 })
      await left
      const again = await b.mqtt({ clientId: assigned, clean: false, properties: { sessionExpiryInterval: 30 } })
      assert.equal(again.connack.sessionPresent, true)
    })
  })
})

describe('MQTT 5 Server Keep Alive', () => {
  for (const asked of [120, 0]) {
    test(`with limits.maxKeepAlive 60 a client asking keep alive ${asked} gets Server Keep Alive 60`, { timeout: TEST_TIMEOUT }, async () => {
      // Section 3.2.2.3.14: the server may override the client's Keep Alive with Server Keep Alive;
      // [MQTT-3.1.2-21] [MQTT-3.2.2-21] the client must then use it.
      await withV5Broker({ limits: { maxKeepAlive: 60 } }, async (b) => {
        const connected = new Promise<number>((resolve) => b.broker.once('clientConnect', (c) => resolve(c.keepAlive)))
        const { raw, connack } = await b.rawConnect({ clientId: `ka-${asked}`, keepAlive: asked })
        assert.equal(connack.returnCode, 0, 'accepted, not refused as a 3.1.1 client would be')
        assert.equal(connack.properties?.serverKeepAlive, 60)
        assert.equal(await connected, 60, 'the broker runs the connection with the keep alive it announced')
        raw.destroy()
      })
    })
  }

  test('a keep alive under the maximum is left alone: no Server Keep Alive', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-22] without Server Keep Alive the server uses the client's value
    await withV5Broker({ limits: { maxKeepAlive: 60 } }, async (b) => {
      const { connack } = await b.mqtt({ clientId: 'ka-30', keepalive: 30 })
      assert.equal(connack.properties?.serverKeepAlive, undefined)
    })
  })

  for (const asked of [120, 0]) {
    test(`the announced Server Keep Alive is enforced (asked ${asked}, max 1): a silent client gets DISCONNECT 0x8D after about 1.5 s`, { timeout: TEST_TIMEOUT }, async (t) => {
      // [MQTT-3.1.2-22] no packet within 1.5 x the Keep Alive in force closes the connection; the
      // server says why with DISCONNECT 0x8D (Keep Alive timeout), section 3.14.2.1.
      // The broker's clock is mocked: the timeout fires inside the tick that reaches 1.5 s.
      const clock = mockClock(t)
      await withV5Broker({ limits: { maxKeepAlive: 1 } }, async (b) => {
        let closed = false
        b.broker.on('clientDisconnect', () => {
          closed = true
        })
        const { raw, connack } = await b.rawConnect({ clientId: `silent-${asked}`, keepAlive: asked })
        assert.equal(connack.properties?.serverKeepAlive, 1)
        const start = Date.now()
        clock.tick(1499)
        assert.equal(closed, false, 'closed before 1.5 x 1 s')
        clock.tick(1)
        await raw.expectDisconnect(0x8d)
        const elapsed = Date.now() - start
        assert.ok(elapsed >= 1300, `closed after ${elapsed} ms, before 1.5 x 1 s`)
        assert.ok(elapsed < 3500, `closed after ${elapsed} ms, long after 1.5 x 1 s`)
      })
    })
  }

  test('a client that pings within the Server Keep Alive stays connected', { timeout: TEST_TIMEOUT }, async (t) => {
    const clock = mockClock(t)
    await withV5Broker({ limits: { maxKeepAlive: 1 } }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'pinger', keepAlive: 120 })
      for (let i = 0; i < 5; i++) {
        clock.tick(500)
        raw.send({ type: 'pingreq' })
        await raw.take('pingresp')
      }
      assert.equal(raw.closed, false)
      assert.equal(raw.inbox.some((p) => p.type === 'disconnect'), false)
    })
  })
})

describe('MQTT 5 session expiry', () => {
  test('Session Expiry Interval 0: a reconnect with Clean Start 0 gets Session Present 0 and none of the old state', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.1.2.11.2: absent or 0, the session ends when the network connection closes;
    // [MQTT-3.2.2-3] no session state, Session Present 0.
    await withV5Broker({}, async (b) => {
      const first = await b.mqtt({ clientId: 'exp0', clean: false, properties: { sessionExpiryInterval: 0 } })
      await first.client.subscribeAsync('exp0/t', { qos: 1 })
      await leave(b, first.client)
      const publisher = await b.mqtt({ clientId: 'exp0-pub' })
      await publisher.client.publishAsync('exp0/t', 'while-away', { qos: 1 })
      const again = await b.mqtt({ clientId: 'exp0', clean: false })
      assert.equal(again.connack.sessionPresent, false)
      await again.client.subscribeAsync('exp0/fence', { qos: 1 })
      await fence(b, 'exp0/fence', again.inbox)
      assert.deepEqual(again.inbox.withPayload('while-away'), [], 'nothing was kept for the ended session')
    })
  })

  test('Session Expiry Interval 30: Session Present 1, subscriptions kept, queued QoS 1 messages delivered', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.1.2-23] session state is stored after the connection closes when the interval is
    // above 0; [MQTT-3.1.2-5] Clean Start 0 resumes it; [MQTT-3.2.2-3] Session Present 1.
    await withV5Broker({}, async (b) => {
      const first = await b.mqtt({ clientId: 'exp30', clean: false, properties: { sessionExpiryInterval: 30 } })
      assert.equal(first.connack.sessionPresent, false)
      await first.client.subscribeAsync('exp30/t', { qos: 1 })
      await leave(b, first.client)
      const publisher = await b.mqtt({ clientId: 'exp30-pub' })
      await publisher.client.publishAsync('exp30/t', 'queued-1', { qos: 1 })
      await publisher.client.publishAsync('exp30/t', 'queued-2', { qos: 1 })
      const again = await b.mqtt({ clientId: 'exp30', clean: false, properties: { sessionExpiryInterval: 30 } })
      assert.equal(again.connack.sessionPresent, true)
      await again.inbox.waitFor('queued-1')
      await again.inbox.waitFor('queued-2')
      assert.deepEqual(
        again.inbox.messages.map((m) => m.payload),
        ['queued-1', 'queued-2'],
      )
      // The subscription is still in place for new messages
      await publisher.client.publishAsync('exp30/t', 'live', { qos: 1 })
      await again.inbox.waitFor('live')
    })
  })

  test('a session with Session Expiry Interval 1 survives a quick reconnect but is gone after about 1.5 s offline', { timeout: TEST_TIMEOUT }, async (t) => {
    // [MQTT-4.1.0-2] the server discards the session state once the connection is closed and the
    // Session Expiry Interval has passed. (The broker's clock is mocked.)
    const clock = mockClock(t)
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'exp1', clean: false, properties: { sessionExpiryInterval: 1 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('exp1/t', { qos: 1 })
      await leave(b, first.client)
      // Within the interval the session is still there
      const quick = await b.mqtt(opts)
      assert.equal(quick.connack.sessionPresent, true, 'resumed within the expiry interval')
      await leave(b, quick.client)
      clock.tick(1600)
      const late = await b.mqtt(opts)
      assert.equal(late.connack.sessionPresent, false, 'the session expired')
    })
  })

  test('limits.maxSessionExpiryInterval 10 with a request of 100: CONNACK carries Session Expiry Interval 10', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.2.2.3.2: the server tells the client in CONNACK when it uses a Session Expiry
    // Interval other than the one the client sent.
    await withV5Broker({ limits: { maxSessionExpiryInterval: 10 } }, async (b) => {
      const { connack } = await b.mqtt({ clientId: 'cut', clean: false, properties: { sessionExpiryInterval: 100 } })
      assert.equal(connack.properties?.sessionExpiryInterval, 10)
      // A request within the limit is granted as is, so CONNACK need not repeat it
      const { connack: within } = await b.mqtt({ clientId: 'within', clean: false, properties: { sessionExpiryInterval: 5 } })
      assert.equal(within.properties?.sessionExpiryInterval ?? 5, 5)
    })
  })

  test('limits.maxSessionExpiryInterval 1 is enforced: a session asking 100 is gone after about 1.5 s offline', { timeout: TEST_TIMEOUT }, async (t) => {
    const clock = mockClock(t)
    await withV5Broker({ limits: { maxSessionExpiryInterval: 1 } }, async (b) => {
      const opts = { clientId: 'capped', clean: false, properties: { sessionExpiryInterval: 100 } }
      const first = await b.mqtt(opts)
      assert.equal(first.connack.properties?.sessionExpiryInterval, 1)
      await first.client.subscribeAsync('capped/t', { qos: 1 })
      await leave(b, first.client)
      clock.tick(1600)
      const late = await b.mqtt(opts)
      assert.equal(late.connack.sessionPresent, false)
    })
  })

  test('DISCONNECT with Session Expiry Interval 0 ends a session that had 30', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.14.2.2.2: the Session Expiry Interval on DISCONNECT replaces the one from CONNECT.
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'end-now', clean: false, properties: { sessionExpiryInterval: 30 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('end-now/t', { qos: 1 })
      await leave(b, first.client, { reasonCode: 0, properties: { sessionExpiryInterval: 0 } })
      const again = await b.mqtt(opts)
      assert.equal(again.connack.sessionPresent, false)
    })
  })

  test('DISCONNECT raising the Session Expiry Interval from 30 to 60 keeps the session', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'longer', clean: false, properties: { sessionExpiryInterval: 30 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('longer/t', { qos: 1 })
      await leave(b, first.client, { reasonCode: 0, properties: { sessionExpiryInterval: 60 } })
      const again = await b.mqtt(opts)
      assert.equal(again.connack.sessionPresent, true)
    })
  })

  test('DISCONNECT setting a non-zero Session Expiry Interval after CONNECT had 0: DISCONNECT 0x82, the session still ends and the will is published', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.14.2.2.2: with 0 in CONNECT it is a Protocol Error to set a non-zero interval on
    // DISCONNECT; the server does not treat it as a valid DISCONNECT and uses DISCONNECT 0x82.
    // Not a valid DISCONNECT, so the will is not discarded ([MQTT-3.1.2-8], [MQTT-3.14.4-3]).
    await withV5Broker({}, async (b) => {
      const watcher = await b.mqtt({ clientId: 'watcher' })
      await watcher.client.subscribeAsync('sneaky/will', { qos: 1 })
      const { raw } = await b.rawConnect({
        clientId: 'sneaky',
        cleanSession: false,
        will: { topic: 'sneaky/will', payload: Buffer.from('will'), qos: 1, retain: false },
      })
      const left = gone(b, 'sneaky')
      raw.send({ type: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 30 } })
      await raw.expectDisconnect(0x82)
      assert.equal(await left, 'protocol-error')
      await watcher.inbox.waitFor('will')
      const again = await b.mqtt({ clientId: 'sneaky', clean: false })
      assert.equal(again.connack.sessionPresent, false, 'the session did not get a life from the invalid DISCONNECT')
    })
  })
})

describe('MQTT 5 DISCONNECT from the server', () => {
  test('session takeover: the old connection receives DISCONNECT 0x8E and is closed', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.1.4-3] the server sends DISCONNECT 0x8E (Session taken over) to the existing client and closes its connection
    await withV5Broker({}, async (b) => {
      const { raw: old } = await b.rawConnect({ clientId: 'twin' })
      const { raw: fresh, connack } = await b.rawConnect({ clientId: 'twin' })
      assert.equal(connack.returnCode, 0)
      await old.expectDisconnect(0x8e)
      assert.equal(fresh.closed, false, 'the new connection stays')
      fresh.send({ type: 'pingreq' })
      await fresh.take('pingresp')
    })
  })

  test("session takeover publishes the old connection's will", { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.1.4 step 3: "If the existing Client has a Will Message, that Will Message is
    // published as described in section 3.1.2.5" (Will Delay Interval 0 here).
    await withV5Broker({}, async (b) => {
      const watcher = await b.mqtt({ clientId: 'watcher' })
      await watcher.client.subscribeAsync('twin/will', { qos: 1 })
      const { raw: old } = await b.rawConnect({ clientId: 'twin', will: { topic: 'twin/will', payload: Buffer.from('replaced'), qos: 1, retain: false } })
      await b.rawConnect({ clientId: 'twin' })
      await old.expectDisconnect(0x8e)
      await watcher.inbox.waitFor('replaced')
    })
  })

  test('broker.close(): every v5 client receives DISCONNECT 0x8B', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.14.2.1: 0x8B Server shutting down
    await withV5Broker({}, async (b) => {
      const { raw: one } = await b.rawConnect({ clientId: 'one' })
      const { raw: two } = await b.rawConnect({ clientId: 'two' })
      await b.broker.close()
      await one.expectDisconnect(0x8b)
      await two.expectDisconnect(0x8b)
    })
  })

  test("the host's client.close() (the clientConnect event's client): DISCONNECT 0x98", { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.14.2.1: 0x98 Administrative action; [MQTT-3.14.0-1] only after a successful CONNACK
    await withV5Broker({}, async (b) => {
      b.broker.on('clientConnect', (client) => {
        if (client.id === 'kicked') client.close()
      })
      const raw = await b.raw()
      const connack = await raw.connect({ clientId: 'kicked' })
      assert.equal(connack.returnCode, 0)
      await raw.expectDisconnect(0x98)
      // The 3.1.1 client of the same host call just sees the connection close
      const v4 = await b.raw(4)
      const connack4 = await v4.connect({ clientId: 'kicked' })
      assert.equal(connack4.returnCode, 0)
      await v4.waitClosed()
      assert.equal(v4.inbox.some((p) => p.type === 'disconnect'), false, 'no DISCONNECT to a 3.1.1 client')
    })
  })
})

describe('MQTT 5 authenticate answers', () => {
  test('authenticate returning { reasonCode: 0x87, reasonString } refuses with CONNACK 0x87 carrying that reason string', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-8] a CONNACK reason code from table 3-1; section 3.2.2.3.9 Reason String;
    // [MQTT-3.2.2-6] Session Present 0; [MQTT-3.2.2-7] code >= 0x80 closes the connection.
    await withV5Broker({ authenticate: () => ({ reasonCode: 0x87, reasonString: 'nope' }) }, async (b) => {
      const raw = await b.raw()
      const connack = await raw.connect({ clientId: 'refused' })
      assert.equal(hex(connack.returnCode), hex(0x87))
      assert.equal(connack.sessionPresent, false)
      assert.equal(connack.properties?.reasonString, 'nope')
      await raw.waitClosed()
    })
  })

  test('authenticate returning false refuses with CONNACK 0x86 (bad user name or password)', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({ authenticate: async () => false }, async (b) => {
      const raw = await b.raw()
      const connack = await raw.connect({ clientId: 'refused', username: 'u', password: Buffer.from('p') })
      assert.equal(hex(connack.returnCode), hex(0x86))
      assert.equal(connack.sessionPresent, false)
      await raw.waitClosed()
      // A 3.1.1 client gets the 3.1.1 code 4 for the same answer
      const v4 = await b.raw(4)
      const connack4 = await v4.connect({ clientId: 'refused-4', username: 'u', password: Buffer.from('p') })
      assert.equal(connack4.returnCode, 4)
    })
  })
})

describe('MQTT 5 wills and DISCONNECT reason codes', () => {
  test('DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will, with its properties', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.14.2.1: 0x04 asks the server to publish the will; [MQTT-3.1.2-8] the will is
    // published unless deleted by a DISCONNECT with reason 0x00. Will properties (section
    // 3.1.3.2) travel with it like PUBLISH properties.
    await withV5Broker({}, async (b) => {
      const watcher = await b.mqtt({ clientId: 'watcher' })
      await watcher.client.subscribeAsync('will/t', { qos: 1 })
      const dying = await b.mqtt({
        clientId: 'dying',
        will: {
          topic: 'will/t',
          payload: Buffer.from('goodbye'),
          qos: 1,
          retain: false,
          properties: { contentType: 'text/plain', userProperties: { why: 'asked' } },
        },
      })
      await leave(b, dying.client, { reasonCode: 0x04 })
      const got = await watcher.inbox.waitFor('goodbye')
      assert.equal(got.topic, 'will/t')
      assert.equal(got.packet.properties?.contentType, 'text/plain')
      assert.deepEqual({ ...got.packet.properties?.userProperties }, { why: 'asked' })
    })
  })

  test('DISCONNECT with reason 0x00 discards the will', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.14.4-3] on DISCONNECT 0x00 the server discards the will without publishing it
    await withV5Broker({}, async (b) => {
      const watcher = await b.mqtt({ clientId: 'watcher' })
      await watcher.client.subscribeAsync('will/t', { qos: 1 })
      const polite = await b.mqtt({ clientId: 'polite', will: { topic: 'will/t', payload: Buffer.from('goodbye'), qos: 1, retain: false } })
      await leave(b, polite.client, { reasonCode: 0x00 })
      await fence(b, 'will/t', watcher.inbox)
      assert.deepEqual(watcher.inbox.withPayload('goodbye'), [], 'the will was not published')
    })
  })
})
