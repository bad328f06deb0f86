/**
 * `broker.drain()`: not ready at once, no new connections, each client ended once its QoS 1/2
 * exchanges settle (or at the deadline), MQTT 5 clients told why (0x8B, or 0x9C/0x9D with a Server
 * Reference), then closed as `close()` does.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import { tcp } from '../../src/index.js'
import { ReasonCode } from '../../src/protocol/reason-codes.js'
import { connect, hex, once, startBroker, type RawMqtt, type TestBroker } from '../helpers/index.js'

/** An MQTT 5 raw client connected as `clientId` and subscribed to `filter` at QoS 1. */
async function v5Subscriber(b: TestBroker, clientId: string, filter = 'drain/#'): Promise<RawMqtt> {
  const raw = await b.raw(5)
  const connack = await raw.connect({ clientId })
  assert.equal(connack.returnCode, 0)
  await raw.subscribe(filter, 1)
  return raw
}

/** A subscriber holding one QoS 1 message it has not acknowledged; returns the message's packet id. */
async function holding(b: TestBroker, raw: RawMqtt, topic = 'drain/held'): Promise<number> {
  await b.broker.publish({ topic, payload: 'held', qos: 1 })
  const publish = await raw.takePublish('held')
  assert.equal(publish.qos, 1)
  assert.equal(b.broker.stats().inflight, 1, 'one message in flight')
  return publish.packetId
}

/** Tries a new TCP connection; resolves with what the broker sent before the connection ended (refused: nothing). */
function tryConnect(port: number): Promise<{ refused: boolean; received: number }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let received = 0
    let refused = false
    socket.on('connect', () => socket.write(connect({ clientId: 'late' })))
    socket.on('data', (d: Buffer) => (received += d.length))
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') refused = true
    })
    socket.on('close', () => resolve({ refused, received }))
  })
}

describe('broker.drain()', { timeout: 20_000 }, () => {
  test('health().ready is false right after drain() is called; an mqtt client is disconnected; drain resolves', async () => {
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'plain' })
      assert.equal(b.broker.health().ready, true)
      const closed = once(client, 'close')
      const draining = b.broker.drain({ timeoutMs: 5_000 })
      assert.equal(b.broker.health().ready, false, 'not ready at once')
      assert.equal(b.broker.health().draining, true)
      assert.equal(b.broker.stats().draining, true)
      assert.equal(b.broker.stats().ready, false)
      await closed
      await draining
      assert.equal(b.broker.connectedClients, 0)
    } finally {
      await b.close()
    }
  })

  test('a new TCP connection after drain() started gets no CONNACK', async () => {
    const b = await startBroker()
    try {
      // A subscriber holding an unacknowledged message keeps the drain going.
      const slow = await v5Subscriber(b, 'slow')
      const packetId = await holding(b, slow)
      const draining = b.broker.drain({ timeoutMs: 10_000 })
      const late = await tryConnect(b.port)
      assert.equal(late.received, 0, 'the broker answered nothing')
      assert.ok(late.refused, 'the listener is closed: ECONNREFUSED')
      assert.equal(slow.closed, false, 'the drain is still waiting for the slow subscriber')
      slow.send({ type: 'puback', packetId })
      await slow.expectDisconnect(ReasonCode.ServerShuttingDown)
      await draining
    } finally {
      await b.close()
    }
  })

  test('an MQTT 5 client gets DISCONNECT 0x8B (server shutting down) without a server reference', async () => {
    const b = await startBroker()
    try {
      const raw = await v5Subscriber(b, 'v5')
      const draining = b.broker.drain()
      const disconnect = await raw.expectDisconnect(0x8b)
      assert.equal(disconnect.properties?.serverReference, undefined)
      await draining
    } finally {
      await b.close()
    }
  })

  test("serverReference 'other:1883': DISCONNECT 0x9C (use another server) with the Server Reference; temporary: false gives 0x9D", async () => {
    for (const [temporary, code] of [[undefined, 0x9c], [true, 0x9c], [false, 0x9d]] as const) {
      const b = await startBroker()
      try {
        const raw = await v5Subscriber(b, `moved-${String(temporary)}`)
        const draining = b.broker.drain({ serverReference: 'other:1883', ...(temporary === undefined ? {} : { temporary }) })
        const disconnect = await raw.expectDisconnect(code)
        assert.equal(disconnect.properties?.serverReference, 'other:1883', `temporary ${String(temporary)}`)
        await draining
      } finally {
        await b.close()
      }
    }
  })

  test('a subscriber holding an unacknowledged QoS 1 message is disconnected only once it sends the PUBACK', async () => {
    const b = await startBroker()
    try {
      const slow = await v5Subscriber(b, 'slow')
      const packetId = await holding(b, slow)
      let resolved = false
      const draining = b.broker.drain({ timeoutMs: 10_000 }).then(() => (resolved = true))
      // Still served after the drain began: a PINGREQ is answered, and no DISCONNECT came before it.
      await slow.ping()
      assert.equal(slow.closed, false)
      assert.deepEqual(slow.pending().map((p) => p.type), [], `nothing but the PINGRESP: ${slow.describe()}`)
      assert.equal(b.broker.getClient('slow')?.connected, true)
      assert.equal(resolved, false)
      slow.send({ type: 'puback', packetId })
      await slow.expectDisconnect(ReasonCode.ServerShuttingDown)
      await draining
      assert.equal(b.broker.stats().inflight, 0)
    } finally {
      await b.close()
    }
  })

  test('while its in-flight message settles, a subscriber is sent no new QoS 1 message: it waits in the session', async () => {
    const b = await startBroker()
    try {
      const raw = await b.raw(5)
      assert.equal((await raw.connect({ clientId: 'kept', properties: { sessionExpiryInterval: 600 } })).returnCode, 0)
      await raw.subscribe('drain/#', 1)
      const packetId = await holding(b, raw)
      const draining = b.broker.drain({ timeoutMs: 10_000 })
      await b.broker.publish({ topic: 'drain/later', payload: 'later', qos: 1 })
      // The PINGRESP comes after anything the broker wrote before it: no PUBLISH of 'later'.
      await raw.ping()
      assert.deepEqual(raw.pending().map((p) => p.type), [], `nothing but the PINGRESP: ${raw.describe()}`)
      assert.equal(b.broker.getSession('kept')?.queued, 1, "'later' waits in the persistent session")
      raw.send({ type: 'puback', packetId })
      await raw.expectDisconnect(ReasonCode.ServerShuttingDown)
      await draining
    } finally {
      await b.close()
    }
  })

  test('with a short timeoutMs, a subscriber that never acknowledges is disconnected anyway after the deadline', async () => {
    const b = await startBroker()
    try {
      const stubborn = await v5Subscriber(b, 'stubborn')
      await holding(b, stubborn)
      const draining = b.broker.drain({ timeoutMs: 300 })
      const disconnect = await stubborn.expectDisconnect(ReasonCode.ServerShuttingDown)
      assert.equal(hex(disconnect.reasonCode), hex(0x8b))
      await draining
    } finally {
      await b.close()
    }
  })

  test('calling drain() twice returns the same promise; it resolves once closed; close() after it is fine', async () => {
    const b = await startBroker()
    try {
      await b.connect({ clientId: 'c' })
      const first = b.broker.drain({ timeoutMs: 2_000 })
      const second = b.broker.drain({ timeoutMs: 99 })
      assert.equal(first, second)
      await first
      // Closed: nothing more can be published, no listener started; close() resolves.
      await assert.rejects(b.broker.publish({ topic: 't', payload: 'x' }), /closed/)
      await assert.rejects(b.broker.listen(tcp({ port: 0, host: '127.0.0.1' })), /closed/)
      assert.equal(b.broker.health().ready, false)
      await b.broker.close()
      assert.equal(b.broker.drain(), b.broker.close(), 'drain() after close() is the close promise')
    } finally {
      await b.close()
    }
  })
})
