/**
 * The CONNECT handshake over real sockets: protocol names and levels, malformed CONNECT packets,
 * client identifiers, session present, the authenticate hook and the connection limits.
 * Normative statements are cited from MQTT 3.1.1 (OASIS) unless marked as MQTT 3.1.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { AuthenticateRequest, Client } from '../../src/index.js'
import {
  connect,
  connectAccepted,
  decodeAll,
  DISCONNECT,
  expectClosedSilently,
  expectRefused,
  lp,
  mockClock,
  nextTurn,
  once,
  packet,
  PINGREQ,
  PINGRESP,
  publish,
  rawConnect,
  readConnack,
  subscribe,
  until,
  withBroker,
  type TestBroker,
} from '../helpers/index.js'

/** Collects the clients the broker accepted, as its `clientConnect` event reports them. */
function connectedClients(b: TestBroker): Client[] {
  const clients: Client[] = []
  b.broker.on('clientConnect', (client) => clients.push(client))
  return clients
}

/** Invalid UTF-8: an overlong encoding of '/', and a lone (high) surrogate U+D800. */
const INVALID_UTF8: Array<[string, number[]]> = [
  ['overlong C0 AF', [0x61, 0xc0, 0xaf]],
  ['lone surrogate ED A0 80', [0x61, 0xed, 0xa0, 0x80]],
  ['U+0000', [0x61, 0x00, 0x62]],
]

describe('CONNECT: protocol name and level', () => {
  test("'MQIsdp' level 3 (MQTT 3.1) is accepted and served as 3.1", async () => {
    // [MQTT 3.1 section 3.1] protocol name "MQIsdp", version 3; MQIsdp/3 is supported
    await withBroker({}, async (b) => {
      const clients = connectedClients(b)
      const client = await b.connect({ protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'v31-client' })
      assert.equal(client.connected, true)
      assert.equal(clients.length, 1)
      assert.equal(clients[0]?.id, 'v31-client')
      assert.equal(clients[0]?.protocolVersion, 3)
    })
  })

  test("'MQTT' level 4 (MQTT 3.1.1) is accepted and served as 3.1.1", async () => {
    // [MQTT-3.1.2-1] protocol name "MQTT"; section 3.1.2.2: level 4 is 3.1.1
    await withBroker({}, async (b) => {
      const clients = connectedClients(b)
      const client = await b.connect({ protocolId: 'MQTT', protocolVersion: 4, clientId: 'v311-client' })
      assert.equal(client.connected, true)
      assert.equal(clients[0]?.id, 'v311-client')
      assert.equal(clients[0]?.protocolVersion, 4)
    })
  })

  // [MQTT-3.1.2-2] an unsupported level: CONNACK 0x01 (unacceptable protocol level), then disconnect.
  // Only the pairs 'MQIsdp'/3 and 'MQTT'/4 are MQTT 3.1 and 3.1.1; a mismatched pair is neither
  // (Mosquitto answers those with 1 as well).
  const unsupported: Array<[string, number]> = [
    ['MQTT', 6],
    ['MQTT', 2],
    ['MQTT', 0],
    ['MQTT', 255],
    ['MQTT', 3],
    ['MQIsdp', 4],
    ['MQIsdp', 2],
  ]
  for (const [name, level] of unsupported) {
    test(`'${name}' level ${level} gets CONNACK return code 1, then the connection is closed`, async () => {
      // [MQTT-3.1.2-2]
      await withBroker({}, async (b) => {
        const clients = connectedClients(b)
        const raw = await b.raw()
        await expectRefused(raw, rawConnect({ name, level, flags: 0x02, keepAlive: 10, payload: [lp('level-test')] }), 1)
        assert.equal(clients.length, 0, 'no client was accepted')
      })
    })
  }

  test('an unknown protocol name closes the connection without CONNACK', async () => {
    // [MQTT-3.1.2-1] an incorrect protocol name: the server MAY disconnect the client (and must not
    // go on as if it were MQTT); [MQTT-3.1.4-1] a non-conforming CONNECT is closed without CONNACK
    await withBroker({}, async (b) => {
      for (const name of ['HTTP', 'mqtt', 'MQTT\u0000', 'MQIsdP', '']) {
        const raw = await b.raw()
        await expectClosedSilently(raw, rawConnect({ name, level: 4, payload: [lp('name-test')] }), `protocol name ${JSON.stringify(name)}`)
      }
    })
  })
})

describe('CONNECT: packet order', () => {
  test('a first packet that is not CONNECT closes the connection', async () => {
    // [MQTT-3.1.0-1] the first packet from the client MUST be CONNECT
    await withBroker({}, async (b) => {
      const firsts: Array<[string, Buffer]> = [
        ['PINGREQ', PINGREQ],
        ['PUBLISH', publish('a/b', 'x')],
        ['SUBSCRIBE', subscribe(1, 'a/b')],
        ['DISCONNECT', DISCONNECT],
      ]
      for (const [name, bytes] of firsts) {
        const raw = await b.raw()
        await expectClosedSilently(raw, bytes, `${name} first`)
      }
    })
  })

  test('a second CONNECT closes the connection', async () => {
    // [MQTT-3.1.0-2] a second CONNECT is a protocol violation: the server MUST disconnect the client
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'twice' }))
      raw.write(connect({ clientId: 'twice' }))
      await raw.waitClosed()
      assert.equal(raw.received.length, 4, 'only the first CONNACK was sent')
    })
  })

  test('no CONNECT within limits.connectTimeoutMs closes the connection', async (t) => {
    // MQTT 3.1.1 section 3.1.4: a server SHOULD close a connection that sends no CONNECT within a
    // reasonable time; that time is limits.connectTimeoutMs. The clock is mocked, and the
    // connection is an in-memory pair, so the broker's end of it (and its timer) exists at once.
    const clock = mockClock(t)
    await withBroker({ limits: { connectTimeoutMs: 300 } }, async (b) => {
      const { raw, brokerSide } = b.rawInMemory()
      clock.tick(299)
      assert.equal(brokerSide.writableEnded, false, 'closed before the 300 ms timeout')
      clock.tick(1)
      assert.equal(brokerSide.writableEnded, true, 'not closed at the 300 ms timeout')
      await raw.waitClosed()
      assert.equal(raw.received.length, 0)

      // A half-sent CONNECT is no CONNECT either.
      const { raw: partial, brokerSide: partialSide } = b.rawInMemory()
      partial.write(connect({ clientId: 'slow' }).subarray(0, 5))
      await nextTurn() // in memory: the broker has read the 5 bytes
      clock.tick(300)
      assert.equal(partialSide.writableEnded, true, 'a half-sent CONNECT held off the connect timeout')
      await partial.waitClosed()
      assert.equal(partial.received.length, 0)
    })
  })

  test('a client that sent CONNECT in time is not closed by the connect timeout', async (t) => {
    // only a connection without CONNECT within connectTimeoutMs is closed
    const clock = mockClock(t)
    await withBroker({ limits: { connectTimeoutMs: 300 } }, async (b) => {
      let gone = false
      b.broker.on('clientDisconnect', () => {
        gone = true
      })
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'in-time', keepAlive: 0 }))
      clock.tick(600) // twice the connect timeout
      assert.equal(gone, false)
      raw.write(PINGREQ)
      await raw.waitBytes(6)
      assert.equal(raw.closed, false)
      assert.deepEqual(raw.received.subarray(4), PINGRESP)
    })
  })
})

describe('CONNECT: malformed flags and strings', () => {
  test('the reserved connect flag set closes the connection', async () => {
    // [MQTT-3.1.2-3] the server MUST validate that the reserved flag is 0 and disconnect if not
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await expectClosedSilently(raw, rawConnect({ flags: 0x03, payload: [lp('reserved')] }), 'reserved flag')
    })
  })

  test('will QoS or will retain without the will flag closes the connection', async () => {
    // [MQTT-3.1.2-11] will flag 0: will QoS and will retain MUST be 0; [MQTT-3.1.2-13] [MQTT-3.1.2-15]
    await withBroker({}, async (b) => {
      for (const [what, flags] of [
        ['will QoS 1', 0x02 | 0x08],
        ['will QoS 2', 0x02 | 0x10],
        ['will retain', 0x02 | 0x20],
      ] as const) {
        const raw = await b.raw()
        await expectClosedSilently(raw, rawConnect({ flags, payload: [lp('willflags')] }), `${what} without will flag`)
      }
    })
  })

  test('will QoS 3 closes the connection', async () => {
    // [MQTT-3.1.2-14] with the will flag set, will QoS MUST NOT be 3
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      const flags = 0x02 | 0x04 | 0x18
      await expectClosedSilently(raw, rawConnect({ flags, payload: [lp('willqos3'), lp('will/topic'), lp('bye')] }), 'will QoS 3')
    })
  })

  test('a 3.1.1 password without user name closes the connection', async () => {
    // [MQTT-3.1.2-22] if the user name flag is 0, the password flag MUST be 0
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await expectClosedSilently(raw, rawConnect({ flags: 0x02 | 0x40, payload: [lp('nouser'), lp('secret')] }), 'password without user name')
    })
  })

  test('invalid UTF-8 or U+0000 in the client identifier closes the connection', async () => {
    // [MQTT-1.5.3-1] ill-formed UTF-8 (overlong forms, surrogates) MUST close the connection;
    // [MQTT-1.5.3-2] so MUST U+0000; [MQTT-3.1.3-4] the client identifier is a UTF-8 string
    await withBroker({}, async (b) => {
      for (const [what, bytes] of INVALID_UTF8) {
        const raw = await b.raw()
        await expectClosedSilently(raw, rawConnect({ flags: 0x02, payload: [lp(bytes)] }), `client id with ${what}`)
      }
    })
  })

  test('invalid UTF-8 or U+0000 in the user name closes the connection', async () => {
    // [MQTT-1.5.3-1] [MQTT-1.5.3-2]; [MQTT-3.1.3-11] the user name MUST be a UTF-8 encoded string
    await withBroker({}, async (b) => {
      for (const [what, bytes] of INVALID_UTF8) {
        const raw = await b.raw()
        await expectClosedSilently(raw, rawConnect({ flags: 0x02 | 0x80, payload: [lp('baduser'), lp(bytes)] }), `user name with ${what}`)
      }
    })
  })

  test('invalid UTF-8 or U+0000 in the will topic closes the connection', async () => {
    // [MQTT-1.5.3-1] [MQTT-1.5.3-2]; [MQTT-3.1.3-10] the will topic MUST be a UTF-8 encoded string
    await withBroker({}, async (b) => {
      for (const [what, bytes] of INVALID_UTF8) {
        const raw = await b.raw()
        await expectClosedSilently(raw, rawConnect({ flags: 0x02 | 0x04, payload: [lp('badwill'), lp(bytes), lp('bye')] }), `will topic with ${what}`)
      }
    })
  })

  test('the same CONNECT with valid strings is accepted (control for the malformed cases)', async () => {
    // Section 3.1: the hand-built packets above differ from a valid CONNECT only in the bytes under test
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      raw.write(rawConnect({ flags: 0x02 | 0x04 | 0x80 | 0x40, payload: [lp('good'), lp('will/topic'), lp('bye'), lp('user'), lp('pw')] }))
      assert.equal((await readConnack(raw)).returnCode, 0)
      const raw2 = await b.raw()
      raw2.write(rawConnect({ name: 'MQIsdp', level: 3, flags: 0x02, payload: [lp('good31')] }))
      assert.equal((await readConnack(raw2)).returnCode, 0)
    })
  })
})

describe('CONNECT: client identifiers', () => {
  test('an empty client id with clean session is accepted with a unique broker-assigned id', async () => {
    // [MQTT-3.1.3-6] the server MAY allow a zero-byte ClientId and MUST then assign a unique one
    // [MQTT-3.1.3-7] (clean session 1 is required for that)
    await withBroker({}, async (b) => {
      const clients = connectedClients(b)
      const r1 = await b.raw()
      const r2 = await b.raw()
      await connectAccepted(r1, connect({ clientId: '', cleanSession: true }))
      await connectAccepted(r2, connect({ clientId: '', cleanSession: true }))
      assert.equal(clients.length, 2)
      const [a, c] = clients.map((x) => x.id)
      assert.ok(a !== undefined && a.length > 0, 'first assigned id is not empty')
      assert.ok(c !== undefined && c.length > 0, 'second assigned id is not empty')
      assert.notEqual(a, c, 'assigned ids are unique')
    })
  })

  test('an empty client id without clean session gets return code 2', async () => {
    // [MQTT-3.1.3-8] zero-byte ClientId with CleanSession 0: CONNACK 0x02 (identifier rejected), then close
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await expectRefused(raw, connect({ clientId: '', cleanSession: false }), 2)
    })
  })

  test('an MQTT 3.1 client id over 23 characters gets return code 2; exactly 23 is accepted', async () => {
    // [MQTT 3.1 section 3.1, Client Identifier] 1 to 23 characters; longer: CONNACK 2 (identifier rejected)
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await expectRefused(raw, connect({ protocolVersion: 3, clientId: 'x'.repeat(24) }), 2)
      const clients = connectedClients(b)
      const id23 = 'y'.repeat(23)
      await b.connect({ protocolId: 'MQIsdp', protocolVersion: 3, clientId: id23 })
      assert.equal(clients[0]?.id, id23)
    })
  })

  test('an MQTT 3.1.1 client id may be long', async () => {
    // [MQTT-3.1.3-5] the server MUST allow 1-23 characters and MAY allow more
    await withBroker({}, async (b) => {
      const clients = connectedClients(b)
      const long = 'client-'.repeat(30)
      await b.connect({ clientId: long })
      const raw = await b.raw()
      await connectAccepted(raw, connect({ clientId: 'z'.repeat(1000) }))
      assert.deepEqual(
        clients.map((c) => c.id),
        [long, 'z'.repeat(1000)],
      )
    })
  })
})

describe('CONNACK session present', () => {
  test('clean session 1 gets session present 0', async () => {
    // [MQTT-3.2.2-1] CleanSession 1: session present 0 (with return code 0)
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      assert.equal(await connectAccepted(raw, connect({ clientId: 'sp-clean', cleanSession: true })), 0)
      raw.write(DISCONNECT)
      await raw.waitClosed()
      const again = await b.raw()
      assert.equal(await connectAccepted(again, connect({ clientId: 'sp-clean', cleanSession: true })), 0)
    })
  })

  test('persistent sessions: 0 the first time, 1 on reconnect; clean session 1 then discards the old session', async () => {
    // [MQTT-3.2.2-3] no stored session: session present 0; [MQTT-3.2.2-2] stored session resumed: 1
    // [MQTT-3.1.2-6] CleanSession 1 discards any previous session (its subscriptions are gone)
    await withBroker({}, async (b) => {
      const first = await b.raw()
      assert.equal(await connectAccepted(first, connect({ clientId: 'sp', cleanSession: false })), 0, 'first persistent connect')
      first.write(subscribe(1, 'sp/topic', 1))
      await first.waitBytes(4 + 5)
      assert.deepEqual([...first.received.subarray(4, 9)], [0x90, 0x03, 0x00, 0x01, 0x01], 'SUBACK granting QoS 1')
      first.write(DISCONNECT)
      await first.waitClosed()

      const second = await b.raw()
      assert.equal(await connectAccepted(second, connect({ clientId: 'sp', cleanSession: false })), 1, 'reconnect clean 0')
      second.write(DISCONNECT)
      await second.waitClosed()

      const clean = await b.raw()
      assert.equal(await connectAccepted(clean, connect({ clientId: 'sp', cleanSession: true })), 0, 'clean 1 after a persistent session')
      // A marker subscription the old session did not have, so delivery order tells us when to look.
      clean.write(subscribe(7, 'sp/marker', 0))
      await clean.waitBytes(4 + 5)
      const pub = await b.connect({ clientId: 'sp-publisher' })
      await pub.publishAsync('sp/topic', 'to the old subscription', { qos: 1 })
      await pub.publishAsync('sp/marker', 'marker', { qos: 1 })
      await clean.until(() => decodeAll(clean.received).some((p) => p.type === 'publish' && p.topic === 'sp/marker'), 3000, 'the marker message')
      const topics = decodeAll(clean.received).flatMap((p) => (p.type === 'publish' ? [p.topic] : []))
      assert.deepEqual(topics, ['sp/marker'], 'the old subscription to sp/topic is gone')
      clean.write(DISCONNECT)
      await clean.waitClosed()

      // The clean session was not kept either [MQTT-3.1.2-6]: nothing to resume.
      const after = await b.raw()
      assert.equal(await connectAccepted(after, connect({ clientId: 'sp', cleanSession: false })), 0, 'clean 0 after a clean session')
    })
  })
})

describe('authenticate hook', () => {
  test('false refuses with return code 4; { reasonCode: 5 } with 5; true accepts', async () => {
    // false → 3.1.1 return code 4 (bad user name or password), { reasonCode } chooses;
    // [MQTT-3.2.2-4] [MQTT-3.2.2-5] a refusing CONNACK has session present 0 and the connection closes
    await withBroker(
      {
        authenticate: ({ username }) => (username === 'bad' ? false : username === 'forbidden' ? { reasonCode: 5 } : true),
      },
      async (b) => {
        await expectRefused(await b.raw(), connect({ clientId: 'a1', username: 'bad', password: Buffer.from('x') }), 4)
        await expectRefused(await b.raw(), connect({ clientId: 'a2', username: 'forbidden' }), 5)
        await connectAccepted(await b.raw(), connect({ clientId: 'a3', username: 'good' }))
      },
    )
  })

  test('async (Promise) results: false → 4, { reasonCode: 5 } → 5, true accepts', async () => {
    // the authenticate hook may be async
    await withBroker(
      {
        authenticate: async ({ username }) => {
          await new Promise((resolve) => setImmediate(resolve))
          return username === 'bad' ? false : username === 'forbidden' ? { reasonCode: 5 } : true
        },
      },
      async (b) => {
        await expectRefused(await b.raw(), connect({ clientId: 'p1', username: 'bad' }), 4)
        await expectRefused(await b.raw(), connect({ clientId: 'p2', username: 'forbidden' }), 5)
        await connectAccepted(await b.raw(), connect({ clientId: 'p3', username: 'good' }))
        const client = await b.connect({ clientId: 'p4', username: 'good', password: 'pw' })
        assert.equal(client.connected, true)
      },
    )
  })

  test('packets sent right after CONNECT wait for an async authenticate and are then served', async () => {
    // [MQTT-3.1.4-5] a client may send packets before CONNACK; the server must not process them
    // before accepting the CONNECT, and must then process them in order
    let asked = false
    let answer: (ok: boolean) => void = () => {}
    await withBroker(
      {
        authenticate: () => {
          asked = true
          return new Promise<boolean>((resolve) => (answer = resolve))
        },
      },
      async (b) => {
        const raw = await b.raw()
        raw.write(Buffer.concat([connect({ clientId: 'eager' }), PINGREQ]))
        // The hook holds the CONNECT, and the PINGREQ read with it, until the test answers.
        await until(() => asked, undefined, 'the authenticate hook to be called')
        answer(true)
        await raw.waitBytes(6)
        assert.deepEqual([...raw.received.subarray(0, 6)], [0x20, 0x02, 0x00, 0x00, 0xd0, 0x00], 'CONNACK 0 then PINGRESP')
      },
    )
  })

  test('receives the client id, user name, password (a Buffer) and remote address', async () => {
    // authenticate({ clientId, username, password, remoteAddress })
    const seen: AuthenticateRequest[] = []
    await withBroker(
      {
        authenticate: (request) => {
          seen.push(request)
          return true
        },
      },
      async (b) => {
        await b.connect({ clientId: 'auth-args', username: 'alice', password: Buffer.from([0x00, 0xff, 0x73]) })
        assert.equal(seen.length, 1)
        const request = seen[0] as AuthenticateRequest
        assert.equal(request.clientId, 'auth-args')
        assert.equal(request.username, 'alice')
        assert.ok(Buffer.isBuffer(request.password), 'password is a Buffer')
        assert.deepEqual([...(request.password as Buffer)], [0x00, 0xff, 0x73])
        assert.equal(request.remoteAddress, '127.0.0.1')
        assert.equal(request.protocolVersion, 4)
      },
    )
  })

  test('a hook that throws or rejects closes that connection only; the broker keeps serving others', async () => {
    // hook errors never break the broker; the failing client is not accepted
    await withBroker(
      {
        authenticate: ({ username }) => {
          if (username === 'throws') throw new Error('hook exploded')
          if (username === 'rejects') return Promise.reject(new Error('hook rejected'))
          return true
        },
      },
      async (b) => {
        const bystander = await b.connect({ clientId: 'bystander', username: 'ok' })
        await bystander.subscribeAsync('still/alive', { qos: 1 })
        for (const username of ['throws', 'rejects']) {
          const raw = await b.raw()
          raw.write(connect({ clientId: `victim-${username}`, username }))
          await raw.waitClosed()
          const codes = decodeAll(raw.received).flatMap((p) => (p.type === 'connack' ? [p.returnCode] : []))
          assert.ok(!codes.includes(0), `a hook that ${username} must not accept the client`)

          // The connected client is still served ...
          const got = once<[string, Buffer]>(bystander, 'message')
          await bystander.publishAsync('still/alive', username, { qos: 1 })
          const [topic, payload] = await got
          assert.equal(topic, 'still/alive')
          assert.equal(payload.toString(), username)
          // ... and new ones are accepted.
          await connectAccepted(await b.raw(), connect({ clientId: `after-${username}`, username: 'ok' }))
        }
        assert.equal(bystander.connected, true)
      },
    )
  })
})

describe('limits', () => {
  test('maxConnections: the next connection gets CONNACK 3; after one leaves, a new one is accepted', async () => {
    // [MQTT-3.2.2-5]/section 3.2.2.3 return code 3: server unavailable; limits.maxConnections
    await withBroker({ limits: { maxConnections: 2 } }, async (b) => {
      const one = await b.connect({ clientId: 'one' })
      await b.connect({ clientId: 'two' })
      await expectRefused(await b.raw(), connect({ clientId: 'three' }), 3)
      const left = once(b.broker, 'clientDisconnect')
      one.end()
      await left
      await connectAccepted(await b.raw(), connect({ clientId: 'four' }))
      // ... and the limit still holds with that one.
      await expectRefused(await b.raw(), connect({ clientId: 'five' }), 3)
    })
  })

  test('maxKeepAlive: a 3.1.1 client asking for more gets return code 2; asking for less or equal is accepted', async () => {
    // limits.maxKeepAlive; options.ts: a 3.1/3.1.1 client cannot be told a lower keep
    // alive, so it is refused with CONNACK 2 (as Mosquitto does)
    await withBroker({ limits: { maxKeepAlive: 60 } }, async (b) => {
      await expectRefused(await b.raw(), connect({ clientId: 'ka120', keepAlive: 120 }), 2)
      await connectAccepted(await b.raw(), connect({ clientId: 'ka30', keepAlive: 30 }))
      await connectAccepted(await b.raw(), connect({ clientId: 'ka60', keepAlive: 60 }))
    })
  })

  test('maxPacketSize: a larger packet closes the connection; one within the limit is served', async () => {
    // limits.maxPacketSize (fixed header included): a larger packet closes the connection
    await withBroker({ limits: { maxPacketSize: 1024 } }, async (b) => {
      const sub = await b.connect({ clientId: 'size-sub' })
      await sub.subscribeAsync('size/#')

      const ok = await b.raw()
      await connectAccepted(ok, connect({ clientId: 'size-ok' }))
      const got = once<[string, Buffer]>(sub, 'message')
      // 1 + 2 (remaining length) + 2 + 7 (topic) + 1012 = 1024 bytes: exactly the limit.
      const fits = publish('size/ok', Buffer.alloc(1012))
      assert.equal(fits.length, 1024, 'control packet is exactly the limit')
      ok.write(fits)
      const [, payload] = await got
      assert.equal(payload.length, 1012)
      assert.equal(ok.closed, false)

      const big = await b.raw()
      await connectAccepted(big, connect({ clientId: 'size-big' }))
      big.write(publish('size/big', Buffer.alloc(1100)))
      await big.waitClosed()
      assert.equal(big.received.length, 4, 'nothing but the CONNACK')

      // A header announcing an oversized packet is enough: the body is never awaited.
      const header = await b.raw()
      await connectAccepted(header, connect({ clientId: 'size-header' }))
      header.write([0x30, 0xff, 0xff, 0xff, 0x7f])
      await header.waitClosed()

      // An oversized CONNECT is refused too.
      const bigConnect = await b.raw()
      await expectClosedSilently(bigConnect, connect({ clientId: 'c'.repeat(2000) }), 'oversized CONNECT')
      assert.equal(sub.connected, true)
    })
  })
})

test('a malformed remaining length in the first packet closes the connection', async () => {
  // [MQTT-2.2.3] the remaining length takes at most four bytes; [MQTT-3.1.4-1] close without CONNACK
  await withBroker({}, async (b) => {
    const raw = await b.raw()
    await expectClosedSilently(raw, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]), 'five-byte remaining length')
    const raw2 = await b.raw()
    // A CONNECT whose remaining length is shorter than its contents.
    const full = connect({ clientId: 'short' })
    await expectClosedSilently(raw2, packet(0x10, full.subarray(2, full.length - 2)), 'truncated CONNECT')
  })
})
