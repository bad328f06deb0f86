/**
 * The embedding API as a host application sees it: typed events,
 * isolation from faulty listeners, in-process publish and subscribe, `handle(duplex)`, `close()`,
 * `listen()` and `limits`.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, it } from 'node:test'
import { Broker, DEFAULT_LIMITS, tcp, type Client, type DisconnectReason, type Message, type Subscription } from '../../src/index.js'
import { connect, disconnected, Inbox, memoryPair, nextTurn, once, RawMqtt, startBroker, subackCodes } from '../helpers/index.js'

/** Records unhandled rejections and uncaught exceptions while `body` runs. */
async function watchProcess(body: () => Promise<void>): Promise<unknown[]> {
  const problems: unknown[] = []
  const record = (error: unknown): void => {
    problems.push(error)
  }
  process.on('unhandledRejection', record)
  process.on('uncaughtException', record)
  try {
    await body()
    // Rejections are reported once the microtask queue has drained, before the next turn.
    await nextTurn()
  } finally {
    process.off('unhandledRejection', record)
    process.off('uncaughtException', record)
  }
  return problems
}

describe('events', () => {
  it('clientConnect reports the connected client', async () => {
    // Issue 2: `clientConnect(client)` once CONNECT is accepted.
    const b = await startBroker()
    try {
      const fired = once<[Client]>(b.broker, 'clientConnect')
      await b.connect({ clientId: 'ev-connect', username: 'alice', password: 'pw', keepalive: 30, clean: true })
      const [client] = await fired
      assert.equal(client.id, 'ev-connect')
      assert.equal(client.username, 'alice')
      assert.equal(client.protocolVersion, 4)
      assert.equal(client.cleanSession, true)
      assert.equal(client.keepAlive, 30)
      assert.equal(client.connected, true)
      assert.equal(client.remoteAddress, '127.0.0.1')
    } finally {
      await b.close()
    }
  })

  it("clientDisconnect tells 'disconnect' (DISCONNECT sent) from 'socket-closed' (connection lost)", async () => {
    // Issue 2: `clientDisconnect(client, reason)`; [MQTT-3.14.4-1] DISCONNECT is the clean way to leave.
    const b = await startBroker()
    try {
      const polite = await b.connect({ clientId: 'ev-polite' })
      let gone = disconnected(b, 'ev-polite')
      await polite.endAsync()
      const [politeClient, politeReason] = await gone
      assert.equal(politeReason, 'disconnect')
      assert.equal(politeClient.connected, false)

      const rude = await b.connect({ clientId: 'ev-rude' })
      gone = disconnected(b, 'ev-rude')
      rude.stream.destroy()
      const [, rudeReason] = await gone
      assert.equal(rudeReason, 'socket-closed')
    } finally {
      await b.close()
    }
  })

  it('publish reports the message and its client, or null for broker.publish', async () => {
    // Issue 2: `publish(message, client | null)`.
    const b = await startBroker()
    try {
      const events: Array<[Message, Client | null]> = []
      b.broker.on('publish', (message, client) => events.push([message, client]))
      const pub = await b.connect({ clientId: 'ev-pub' })
      await pub.publishAsync('ev/client', 'from a client', { qos: 1, retain: true })
      await b.broker.publish({ topic: 'ev/host', payload: 'from the host', qos: 2 })

      assert.equal(events.length, 2)
      const [fromClient, client] = events[0] as [Message, Client | null]
      assert.equal(fromClient.topic, 'ev/client')
      assert.equal(fromClient.payload.toString(), 'from a client')
      assert.equal(fromClient.qos, 1)
      assert.equal(fromClient.retain, true)
      assert.equal(client?.id, 'ev-pub')
      const [fromHost, none] = events[1] as [Message, Client | null]
      assert.equal(fromHost.topic, 'ev/host')
      assert.equal(fromHost.payload.toString(), 'from the host')
      assert.equal(fromHost.qos, 2)
      assert.equal(none, null)
    } finally {
      await b.close()
    }
  })

  it('publish reaches listeners added after once, off and removeAllListeners, and none after they are gone', async () => {
    // The broker skips the per-message event while nobody listens: that must follow every way of adding and removing.
    const b = await startBroker()
    try {
      const seen: string[] = []
      const record = (m: Message): void => void seen.push(m.topic)
      b.broker.once('publish', record)
      await b.broker.publish({ topic: 'ls/1', payload: 'x' })
      await b.broker.publish({ topic: 'ls/2', payload: 'x' }) // the once listener is gone
      b.broker.on('publish', record)
      await b.broker.publish({ topic: 'ls/3', payload: 'x' })
      b.broker.off('publish', record)
      await b.broker.publish({ topic: 'ls/4', payload: 'x' })
      b.broker.on('publish', record)
      b.broker.removeAllListeners()
      await b.broker.publish({ topic: 'ls/5', payload: 'x' })
      b.broker.on('publish', record)
      await b.broker.publish({ topic: 'ls/6', payload: 'x' })
      b.broker.removeAllListeners('publish')
      b.broker.addListener('publish', record)
      await b.broker.publish({ topic: 'ls/7', payload: 'x' })
      assert.deepEqual(seen, ['ls/1', 'ls/3', 'ls/6', 'ls/7'])
      assert.equal(b.broker.listenerCount('publish'), 1)
    } finally {
      await b.close()
    }
  })

  it('subscribe reports the granted subscriptions (downgraded QoS, refused ones left out)', async () => {
    // Issue 2: `subscribe(subscriptions, client)` with the granted QoS; [MQTT-3.9.3-1] SUBACK per filter.
    const b = await startBroker({
      authorizeSubscribe: (_client, sub) => (sub.topicFilter === 'ev/refused' ? false : sub.topicFilter === 'ev/low' ? 0 : true),
    })
    try {
      const fired = once<[Subscription[], Client]>(b.broker, 'subscribe')
      const sub = await b.connect({ clientId: 'ev-sub' })
      // `subscribeAsync` rejects when a filter is refused, so read the SUBACK from the callback.
      const granted = await subackCodes(sub, { 'ev/full': { qos: 2 }, 'ev/low': { qos: 2 }, 'ev/refused': { qos: 1 } })
      assert.deepEqual(granted, [2, 0, 0x80])
      const [subscriptions, client] = await fired
      assert.equal(client.id, 'ev-sub')
      assert.deepEqual(
        subscriptions.map((s) => [s.topicFilter, s.qos]),
        [
          ['ev/full', 2],
          ['ev/low', 0],
        ],
      )
    } finally {
      await b.close()
    }
  })

  it('unsubscribe reports the topic filters and the client', async () => {
    // Issue 2: `unsubscribe(topicFilters, client)`.
    const b = await startBroker()
    try {
      const sub = await b.connect({ clientId: 'ev-unsub' })
      await sub.subscribeAsync(['ev/a', 'ev/b/#'], { qos: 1 })
      const fired = once<[string[], Client]>(b.broker, 'unsubscribe')
      await sub.unsubscribeAsync(['ev/a', 'ev/b/#'])
      const [filters, client] = await fired
      assert.deepEqual(filters, ['ev/a', 'ev/b/#'])
      assert.equal(client.id, 'ev-unsub')
    } finally {
      await b.close()
    }
  })

  it('clientError reports a client that broke the protocol', async () => {
    // Issue 2: `clientError(client, error)`; [MQTT-4.8.0-1] the connection is then closed.
    const b = await startBroker()
    try {
      const raw = await b.raw()
      raw.write(connect({ clientId: 'ev-bad' }))
      await raw.waitBytes(4)
      const fired = once<[Client, Error]>(b.broker, 'clientError')
      raw.write([0x00, 0x00]) // reserved packet type 0
      const [client, error] = await fired
      assert.equal(client.id, 'ev-bad')
      assert.ok(error instanceof Error)
      await raw.waitClosed()
    } finally {
      await b.close()
    }
  })
})

describe('faulty listeners', () => {
  it('a throwing listener and a rejecting one do not stop other listeners nor the broker', async () => {
    // Issue 2: "A throwing listener never breaks the broker."
    const b = await startBroker()
    try {
      const seen: string[] = []
      const problems = await watchProcess(async () => {
        b.broker.on('clientConnect', () => {
          throw new Error('listener bug')
        })
        b.broker.on('clientConnect', async () => {
          throw new Error('async listener bug')
        })
        b.broker.on('clientConnect', (c) => void seen.push(`connect ${c.id}`))
        b.broker.on('publish', () => {
          throw new Error('publish listener bug')
        })
        b.broker.on('publish', () => Promise.reject(new Error('publish listener rejected')))
        b.broker.on('publish', (m) => void seen.push(`publish ${m.topic}`))
        b.broker.on('subscribe', () => {
          throw new Error('subscribe listener bug')
        })

        const sub = await b.connect({ clientId: 'fl-sub' })
        await sub.subscribeAsync('fl/t', { qos: 1 })
        const got = once<[string, Buffer]>(sub, 'message')
        const pub = await b.connect({ clientId: 'fl-pub' })
        await pub.publishAsync('fl/t', 'still served', { qos: 1 })
        const [topic, payload] = await got
        assert.equal(topic, 'fl/t')
        assert.equal(payload.toString(), 'still served')
        await b.broker.publish({ topic: 'fl/t', payload: 'host', qos: 0 })
      })
      assert.deepEqual(problems, [], 'no uncaught exception or unhandled rejection')
      assert.deepEqual(seen, ['connect fl-sub', 'connect fl-pub', 'publish fl/t', 'publish fl/t'])
      assert.equal(b.broker.connectedClients, 2)
    } finally {
      await b.close()
    }
  })
})

describe('broker.publish', () => {
  it('delivers string and Buffer payloads at QoS 0 and 1 to mqtt subscribers', async () => {
    // Issue 2: `await broker.publish({ topic, payload, qos, retain })` from the host app;
    // [MQTT-3.8.4-6] delivered at min(published QoS, granted QoS).
    const b = await startBroker()
    try {
      const sub = await b.connect({ clientId: 'bp-sub' })
      const box = new Inbox(sub)
      await sub.subscribeAsync('bp/#', { qos: 1 })
      const binary = Buffer.from([0, 1, 2, 0xfe, 0xff])
      await b.broker.publish({ topic: 'bp/string0', payload: 'text zero', qos: 0 })
      await b.broker.publish({ topic: 'bp/buffer0', payload: binary, qos: 0 })
      await b.broker.publish({ topic: 'bp/string1', payload: 'text one', qos: 1 })
      await b.broker.publish({ topic: 'bp/buffer1', payload: binary, qos: 1 })
      await box.waitCount(4)
      assert.deepEqual(
        box.packets.map((m) => [m.topic, m.payload, m.qos, m.retain]),
        [
          ['bp/string0', Buffer.from('text zero'), 0, false],
          ['bp/buffer0', binary, 0, false],
          ['bp/string1', Buffer.from('text one'), 1, false],
          ['bp/buffer1', binary, 1, false],
        ],
      )
    } finally {
      await b.close()
    }
  })

  it('with retain stores the message for later subscribers', async () => {
    // [MQTT-3.3.1-5] a retained message is stored; [MQTT-3.3.1-6] sent to new subscribers with RETAIN 1.
    const b = await startBroker()
    try {
      await b.broker.publish({ topic: 'bp/retained', payload: 'kept', qos: 1, retain: true })
      const sub = await b.connect({ clientId: 'bp-late' })
      const box = new Inbox(sub)
      await sub.subscribeAsync('bp/retained', { qos: 1 })
      await box.waitCount(1)
      assert.deepEqual(
        box.packets.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain })),
        [{ topic: 'bp/retained', payload: Buffer.from('kept'), qos: 1, retain: true }],
      )
    } finally {
      await b.close()
    }
  })

  it('rejects an invalid topic name with a TypeError', async () => {
    // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] at least one character;
    // [MQTT-4.7.3-2] no U+0000.
    const b = await startBroker()
    try {
      for (const topic of ['a/+', 'a/#', '#', '+', 'a/b+', '']) {
        await assert.rejects(b.broker.publish({ topic, payload: 'x' }), TypeError, `topic ${JSON.stringify(topic)}`)
      }
    } finally {
      await b.close()
    }
  })
})

describe('topics the wire cannot carry', () => {
  it('broker.publish and broker.subscribe reject a topic containing U+0000 with a TypeError', async () => {
    // [MQTT-4.7.3-2] topic names and topic filters MUST NOT include the null character; a client
    // receiving one would have to close the connection [MQTT-1.5.3-2].
    const b = await startBroker()
    try {
      await assert.rejects(b.broker.publish({ topic: 'a\u0000b', payload: 'x' }), TypeError)
      await assert.rejects(
        b.broker.subscribe('a/\u0000', () => {}),
        TypeError,
      )
    } finally {
      await b.close()
    }
  })

  it('broker.publish and broker.subscribe reject a topic with a lone surrogate (no UTF-8 encoding) with a TypeError', async () => {
    // [MQTT-1.5.3-1] strings are well-formed UTF-8 and MUST NOT include encodings of U+D800..U+DFFF.
    const b = await startBroker()
    try {
      await assert.rejects(b.broker.publish({ topic: 'a/\ud800', payload: 'x' }), TypeError)
      await assert.rejects(
        b.broker.subscribe('\udc00/#', () => {}),
        TypeError,
      )
      // A well-formed pair (an emoji) is fine.
      await b.broker.publish({ topic: 'a/\ud83d\ude00', payload: 'x' })
    } finally {
      await b.close()
    }
  })

  it('broker.publish rejects a topic over 65,535 UTF-8 bytes with a TypeError, before routing it', async () => {
    // [MQTT-4.7.3-3] topic names MUST NOT encode to more than 65,535 bytes.
    const b = await startBroker()
    try {
      const sub = await b.connect({ clientId: 'long-sub' })
      await sub.subscribeAsync('#', { qos: 0 })
      const published: string[] = []
      b.broker.on('publish', (m) => void published.push(m.topic))
      await assert.rejects(b.broker.publish({ topic: 'x'.repeat(70_000), payload: 'x' }), TypeError)
      assert.deepEqual(published, [], 'the invalid message was not routed')
      // The subscriber is unharmed.
      const got = once<[string, Buffer]>(sub, 'message')
      await b.broker.publish({ topic: 'ok', payload: 'fine' })
      assert.equal((await got)[0], 'ok')
    } finally {
      await b.close()
    }
  })
})

describe('broker.subscribe', () => {
  it("receives client publishes matching 'a/+/c' until the returned function is called", async () => {
    // Issue 2: `const off = await broker.subscribe('a/+/c', handler)`; off() unsubscribes.
    // [MQTT-4.7.1-3] '+' matches exactly one level.
    const b = await startBroker()
    try {
      const got: Message[] = []
      const off = await b.broker.subscribe('a/+/c', (m) => void got.push(m))
      const pub = await b.connect({ clientId: 'bs-pub' })
      // QoS 1: PUBACK comes after routing, so the handler has run when publishAsync resolves.
      await pub.publishAsync('a/b/c', 'match', { qos: 1 })
      await pub.publishAsync('a/b/d', 'no match', { qos: 1 })
      await pub.publishAsync('a/b/b/c', 'no match either', { qos: 1 })
      await pub.publishAsync('a/x/c', 'match too', { qos: 1, retain: true })
      assert.deepEqual(
        got.map((m) => [m.topic, m.payload.toString(), m.qos]),
        [
          ['a/b/c', 'match', 1],
          ['a/x/c', 'match too', 1],
        ],
      )

      off()
      await pub.publishAsync('a/b/c', 'after off', { qos: 1 })
      // Both were routed when their promises resolved (PUBACK, broker.publish), as above.
      await b.broker.publish({ topic: 'a/b/c', payload: 'after off, from the host', qos: 0 })
      assert.equal(got.length, 2, 'no call after off()')
    } finally {
      await b.close()
    }
  })

  it('rejects an invalid topic filter with a TypeError', async () => {
    // [MQTT-4.7.1-2] '#' only last and alone in its level; [MQTT-4.7.1-3] '+' alone in its level.
    const b = await startBroker()
    try {
      for (const filter of ['a/#/b', 'a#', '#/', 'a/b+', '+a', '']) {
        await assert.rejects(
          b.broker.subscribe(filter, () => {}),
          TypeError,
          `filter ${JSON.stringify(filter)}`,
        )
      }
    } finally {
      await b.close()
    }
  })
})

describe('broker.handle', () => {
  it('serves a client over an in-memory Duplex pair', async () => {
    // Issue 2: `broker.handle(duplexStream)`: any Duplex is a client connection.
    const b = await startBroker()
    try {
      const [brokerSide, clientSide] = memoryPair()
      b.broker.handle(brokerSide)
      const peer = new RawMqtt(clientSide)
      peer.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanSession: true, keepAlive: 0, clientId: 'in-memory' })
      const connack = await peer.next('connack')
      assert.equal(connack.returnCode, 0)
      peer.send({ type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter: 'mem/t', qos: 1 }] })
      const suback = await peer.next('suback')
      assert.equal(suback.packetId, 7)
      assert.deepEqual(suback.reasonCodes, [1])

      // A TCP client reaches the in-memory one ...
      const tcpClient = await b.connect({ clientId: 'over-tcp' })
      await tcpClient.publishAsync('mem/t', 'via tcp', { qos: 1 })
      const publish = await peer.next('publish')
      assert.equal(publish.topic, 'mem/t')
      assert.equal(publish.payload.toString(), 'via tcp')
      assert.equal(publish.qos, 1)
      peer.send({ type: 'puback', packetId: publish.packetId })

      // ... and the other way round.
      await tcpClient.subscribeAsync('mem/back', { qos: 0 })
      const back = once<[string, Buffer]>(tcpClient, 'message')
      peer.send({ type: 'publish', topic: 'mem/back', payload: Buffer.from('via duplex'), qos: 0, retain: false, dup: false, packetId: 0 })
      const [topic, payload] = await back
      assert.equal(topic, 'mem/back')
      assert.equal(payload.toString(), 'via duplex')

      peer.send({ type: 'pingreq' })
      await peer.next('pingresp')
      const gone = disconnected(b, 'in-memory')
      peer.send({ type: 'disconnect' })
      assert.equal((await gone)[1], 'disconnect')
      await peer.waitClosed()
    } finally {
      await b.close()
    }
  })
})

describe('broker.close', () => {
  it('stops listeners, closes clients, publishes due wills, and resolves', async () => {
    // Issue 2: "graceful: stop listeners, close clients, flush persistence"; DESIGN.md: "sends wills
    // where due"; [MQTT-3.1.2-8] the will is published when the connection closes without DISCONNECT.
    const b = await startBroker()
    try {
      const wills: Message[] = []
      await b.broker.subscribe('close/#', (m) => void wills.push(m))
      const reasons: DisconnectReason[] = []
      b.broker.on('clientDisconnect', (_c, reason) => reasons.push(reason))
      const withWill = await b.connect({ clientId: 'cl-will', will: { topic: 'close/will', payload: Buffer.from('broker went away'), qos: 1, retain: false } })
      const plain = await b.connect({ clientId: 'cl-plain' })
      const closed = [once(withWill, 'close'), once(plain, 'close')]

      await b.broker.close()
      await Promise.all(closed)

      assert.deepEqual(
        wills.map((m) => [m.topic, m.payload.toString(), m.qos]),
        [['close/will', 'broker went away', 1]],
      )
      assert.deepEqual(reasons, ['server-closing', 'server-closing'])
      assert.equal(b.broker.connectedClients, 0)

      await assert.rejects(
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(b.port, '127.0.0.1', () => {
            socket.destroy()
            resolve()
          })
          socket.once('error', reject)
        }),
        /ECONNREFUSED/,
        'the listener no longer accepts connections',
      )
      await assert.rejects(b.broker.listen(tcp({ port: 0, host: '127.0.0.1' })), 'a closed broker does not listen again')
      // Closing twice is harmless.
      await b.broker.close()
    } finally {
      await b.close()
    }
  })
})

describe('broker.listen', () => {
  it('returns a listener whose address() gives the port', async () => {
    // Issue 2: `listener.address()` is a net.AddressInfo, to learn the port (port 0 = ephemeral).
    const broker = new Broker()
    try {
      const listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
      const address = listener.address()
      assert.ok(address !== null && typeof address === 'object')
      assert.equal(address.address, '127.0.0.1')
      assert.equal(address.family, 'IPv4')
      assert.ok(address.port > 0)
      const connected = once<[Client]>(broker, 'clientConnect')
      const socket = net.connect(address.port, '127.0.0.1')
      socket.on('error', () => {})
      socket.write(connect({ clientId: 'by-port' }))
      const [client] = await connected
      assert.equal(client.id, 'by-port')
      socket.destroy()
    } finally {
      await broker.close()
    }
  })
})

describe('broker.limits', () => {
  it('shows the defaults merged with options.limits', async () => {
    // Issue 2: `limits` has at least maxConnections, maxPacketSize, maxKeepAlive, connectTimeoutMs,
    // maxInflight, maxQueued, with safe defaults.
    const defaults = new Broker()
    const custom = new Broker({ limits: { maxInflight: 7, maxQueued: 42 } })
    try {
      for (const key of ['maxConnections', 'maxPacketSize', 'maxKeepAlive', 'connectTimeoutMs', 'maxInflight', 'maxQueued'] as const) {
        const value = defaults.limits[key]
        assert.ok(Number.isFinite(value) && value > 0, `default ${key} is a positive number, got ${value}`)
      }
      assert.deepEqual({ ...defaults.limits }, { ...DEFAULT_LIMITS })
      assert.deepEqual({ ...custom.limits }, { ...DEFAULT_LIMITS, maxInflight: 7, maxQueued: 42 })
    } finally {
      await defaults.close()
      await custom.close()
    }
  })
})
