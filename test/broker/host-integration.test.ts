/**
 * What a host application needs beyond publish/subscribe: its own errors reported (never silent,
 * never mistaken for a client's protocol error), refused and failed connections visible, client
 * lookup and kicking, MQTT 5 properties on its messages, shared and retained subscriptions.
 */
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'
import type { ConnectionInfo, DisconnectReason, HostErrorSource, Message } from '../../src/index.js'
import { MemoryPersistence } from '../../src/index.js'
import { connect, deferred, mockClock, once, RawMqtt, startBroker, until, withBroker, wrapAdapter } from '../helpers/index.js'

/** Records `hostError` events. */
function hostErrors(b: { broker: { on(event: 'hostError', f: (error: Error, source: HostErrorSource) => void): unknown } }): Array<[string, HostErrorSource]> {
  const seen: Array<[string, HostErrorSource]> = []
  b.broker.on('hostError', (error, source) => seen.push([error.message, source]))
  return seen
}

describe('the host’s own errors', () => {
  test('a throwing authorizePublish: hostError names the hook, the client goes with reason hook-error (MQTT 5: DISCONNECT 0x80), not protocol-error', async () => {
    await withBroker(
      {
        authorizePublish: () => {
          throw new Error('bug in the host')
        },
      },
      async (b) => {
        const errors = hostErrors(b)
        const client = await RawMqtt.open(b.port)
        await client.connect({ clientId: 'victim' })
        const gone = once<[{ id: string }, DisconnectReason]>(b.broker, 'clientDisconnect')
        client.publish('t', 'x', 1, 1)
        await client.expectDisconnect(0x80)
        const [, reason] = await gone
        assert.equal(reason, 'hook-error')
        assert.deepEqual(errors, [['bug in the host', { kind: 'hook', hook: 'authorizePublish', clientId: 'victim' }]])
      },
    )
  })

  test('a rejecting async authenticate: hostError, and the client gets CONNACK 3 (server unavailable), not a silent close', async () => {
    await withBroker({ authenticate: () => Promise.reject(new Error('database down')) }, async (b) => {
      const errors = hostErrors(b)
      const failures: Array<[string, DisconnectReason]> = []
      b.broker.on('connectionError', (error, _info, reason) => failures.push([error.message, reason]))
      const client = await b.raw(4)
      client.write(connect({ clientId: 'hopeful' }))
      assert.equal((await client.next('connack')).returnCode, 3)
      await client.waitClosed()
      await until(() => failures.length === 1, undefined, 'connectionError')
      assert.deepEqual(errors, [['database down', { kind: 'hook', hook: 'authenticate', clientId: 'hopeful' }]])
      assert.deepEqual(failures, [['database down', 'hook-error']])
    })
  })

  test('a throwing event listener and a rejecting subscribe handler reach hostError; the other listeners still run', async () => {
    await withBroker({}, async (b) => {
      const errors = hostErrors(b)
      let second = 0
      b.broker.on('clientConnect', () => {
        throw new Error('listener bug')
      })
      b.broker.on('clientConnect', () => second++)
      await b.broker.subscribe('t', () => Promise.reject(new Error('handler bug')))
      await b.connect({ clientId: 'c' })
      await b.broker.publish({ topic: 't', payload: 'x' })
      await until(() => errors.length === 2, undefined, 'two host errors')
      assert.equal(second, 1)
      assert.deepEqual(errors, [
        ['listener bug', { kind: 'listener', event: 'clientConnect' }],
        ['handler bug', { kind: 'subscriber', topicFilter: 't' }],
      ])
    })
  })

  test('without a hostError listener, the error is printed to stderr', async (t) => {
    const printed = t.mock.method(console, 'error', () => {})
    await withBroker({}, async (b) => {
      b.broker.on('clientConnect', () => {
        throw new Error('nobody listens')
      })
      await b.connect({ clientId: 'c' })
      await until(() => printed.mock.callCount() === 1, undefined, 'console.error')
      const args = printed.mock.calls[0]?.arguments ?? []
      assert.match(String(args[0]), /clientConnect listener failed/)
      assert.equal((args[1] as Error).message, 'nobody listens')
    })
  })

  test('only the broker emits its events', async () => {
    await withBroker({}, async (b) => {
      assert.equal((b.broker as unknown as { emit?: unknown }).emit, undefined)
    })
  })
})

describe('refused and failed connections', () => {
  test('connectRefused reports a refused CONNECT with its CONNACK code and who it was', async () => {
    await withBroker({ authenticate: () => false }, async (b) => {
      const refused = once<[{ clientId: string; username: string | undefined; reasonCode: number; transport: string }]>(b.broker, 'connectRefused')
      const client = await b.raw(4)
      client.write(connect({ clientId: 'intruder', username: 'eve', password: Buffer.from('guess') }))
      assert.equal((await client.next('connack')).returnCode, 4)
      const [refusal] = await refused
      assert.equal(refusal.clientId, 'intruder')
      assert.equal(refusal.username, 'eve')
      assert.equal(refusal.reasonCode, 4)
      assert.equal(refusal.transport, 'tcp')
    })
  })

  test('a connection that sends no CONNECT in time: connectionError with reason connect-timeout', async (t) => {
    const clock = mockClock(t)
    await withBroker({ limits: { connectTimeoutMs: 2000 } }, async (b) => {
      const failures: Array<[DisconnectReason, ConnectionInfo]> = []
      b.broker.on('connectionError', (_error, info, reason) => failures.push([reason, info]))
      // broker.handle serves the stream at once (the broker is ready): its connect timer runs from now.
      const stream = new PassThrough()
      b.broker.handle(stream, { transport: 'test' })
      stream.write(Buffer.from([0xc0])) // half a packet: still no CONNECT
      clock.tick(1999)
      assert.equal(failures.length, 0)
      clock.tick(1)
      assert.equal(failures.length, 1)
      assert.equal(failures[0]?.[0], 'connect-timeout')
      assert.equal(failures[0]?.[1].transport, 'test')
    })
  })

  test('a client breaking the protocol before CONNECT completes: connectionError with reason protocol-error', async () => {
    await withBroker({}, async (b) => {
      const failure = once<[Error, ConnectionInfo, DisconnectReason]>(b.broker, 'connectionError')
      const client = await b.raw(4)
      client.send({ type: 'pingreq' })
      const [, , reason] = await failure
      assert.equal(reason, 'protocol-error')
      await client.waitClosed()
    })
  })

  test('a stream that fails before CONNECT: connectionError with the error and reason socket-closed', async () => {
    await withBroker({}, async (b) => {
      const failures: Array<[string, DisconnectReason]> = []
      b.broker.on('connectionError', (error, _info, reason) => failures.push([error.message, reason]))
      const stream = new PassThrough()
      b.broker.handle(stream, { transport: 'test' })
      stream.destroy(new Error('read ECONNRESET'))
      await once(stream, 'close')
      assert.deepEqual(failures, [['read ECONNRESET', 'socket-closed']])
    })
  })
})

describe('clients, lookup and kicking', () => {
  test('broker.clients and getClient list the connected clients; client.close() kicks one', async () => {
    await withBroker({}, async (b) => {
      await b.connect({ clientId: 'a' })
      const kicked = await b.connect({ clientId: 'b', protocolVersion: 5 })
      assert.deepEqual(b.broker.clients.map((c) => c.id).sort(), ['a', 'b'])
      assert.equal(b.broker.connectedClients, 2)
      const disconnect = once<[{ reasonCode?: number }]>(kicked, 'disconnect')
      b.broker.getClient('b')?.close()
      assert.equal((await disconnect)[0].reasonCode, 0x98)
      await until(() => b.broker.getClient('b') === undefined, undefined, 'b to be gone')
      assert.deepEqual(b.broker.clients.map((c) => c.id), ['a'])
    })
  })

  test('a Client serialises and prints as its documented fields, not the broker internals', async () => {
    await withBroker({}, async (b) => {
      await b.connect({ clientId: 'shown', username: 'u', password: 'p' })
      const client = b.broker.getClient('shown')
      assert.ok(client)
      const json = JSON.parse(JSON.stringify(client)) as Record<string, unknown>
      assert.deepEqual(Object.keys(json).sort(), ['bridge', 'cleanSession', 'connected', 'id', 'keepAlive', 'protocolVersion', 'remoteAddress', 'remotePort', 'transport', 'username'].sort())
      assert.equal(json.id, 'shown')
      const printed = inspect(client)
      assert.match(printed, /^Client \{/)
      assert.doesNotMatch(printed, /session|decoder|broker|stream/)
    })
  })
})

describe('broker.publish', () => {
  test('MQTT 5 properties reach MQTT 5 subscribers; the result says how many subscribers matched', async () => {
    await withBroker({}, async (b) => {
      const subscriber = await RawMqtt.open(b.port)
      await subscriber.connect({ clientId: 'requester' })
      await subscriber.subscribe([{ topicFilter: 'req', qos: 1 }])
      await b.broker.subscribe('req', () => {})
      const result = await b.broker.publish({
        topic: 'req',
        payload: '{}',
        qos: 1,
        properties: {
          contentType: 'application/json',
          responseTopic: 'res/1',
          correlationData: 'abc',
          userProperties: [['k', 'v']],
          messageExpiryInterval: 60,
          payloadFormatIndicator: 1,
        },
      })
      assert.deepEqual(result, { matched: 2 })
      const p = await subscriber.takePublish('{}')
      assert.equal(p.properties?.contentType, 'application/json')
      assert.equal(p.properties?.responseTopic, 'res/1')
      assert.equal(p.properties?.correlationData?.toString(), 'abc')
      assert.deepEqual(p.properties?.userProperties, [['k', 'v']])
      assert.equal(p.properties?.payloadFormatIndicator, 1)
      assert.ok((p.properties?.messageExpiryInterval ?? 0) <= 60)
      assert.deepEqual(await b.broker.publish({ topic: 'nobody', payload: 'x' }), { matched: 0 })
    })
  })

  test('invalid properties are refused with a TypeError', async () => {
    await withBroker({}, async (b) => {
      await assert.rejects(b.broker.publish({ topic: 't', properties: { responseTopic: 'a/+' } }), TypeError)
      await assert.rejects(b.broker.publish({ topic: 't', properties: { messageExpiryInterval: -1 } }), TypeError)
    })
  })

  test('resolves without waiting for unrelated persistence writes', async () => {
    // A durable adapter whose commits stop completing once the client is connected: a persistent
    // client's change stays pending.
    const memory = new MemoryPersistence()
    let stall = false
    const stalled = deferred<void>()
    const stuck = wrapAdapter(memory, {
      durable: true,
      commit: (ops) => {
        if (!stall) return memory.commit(ops)
        stalled.resolve()
        return new Promise<void>(() => {})
      },
    })
    const b = await startBroker({ persistence: stuck })
    try {
      const client = await b.connect({ clientId: 'persistent', clean: false })
      stall = true
      // A change of its session whose commit never completes.
      client.subscribe('mine', { qos: 1 })
      await stalled.promise
      // Bounded, so that a publish waiting on the stuck save fails here rather than hanging the run.
      let stuckFor: ReturnType<typeof setTimeout> | undefined
      const stuck5s = new Promise<never>((_, reject) => (stuckFor = setTimeout(() => reject(new Error('broker.publish waited on an unrelated write')), 5000)))
      try {
        assert.deepEqual(await Promise.race([b.broker.publish({ topic: 'elsewhere', payload: 'x' }), stuck5s]), { matched: 0 })
      } finally {
        clearTimeout(stuckFor)
      }
    } finally {
      for (const c of b.broker.clients) c.close()
      await Promise.race([b.close(), new Promise((resolve) => setImmediate(resolve))])
    }
  })
})

describe('broker.subscribe', () => {
  test('{ retained: true } delivers the matching retained messages first, with retain set', async () => {
    await withBroker({}, async (b) => {
      await b.broker.publish({ topic: 'r/1', payload: 'one', retain: true })
      await b.broker.publish({ topic: 'r/2', payload: 'two', retain: true })
      const got: Message[] = []
      await b.broker.subscribe('r/+', (m) => got.push(m), { retained: true })
      assert.deepEqual(got.map((m) => [m.topic, m.payload.toString(), m.retain]).sort(), [
        ['r/1', 'one', true],
        ['r/2', 'two', true],
      ])
      const none: Message[] = []
      await b.broker.subscribe('r/+', (m) => none.push(m))
      assert.deepEqual(none, [], 'no retained messages unless asked for')
    })
  })

  test('a $share/{group}/{filter} subscription joins the group next to MQTT clients (each message to one member)', async () => {
    await withBroker({}, async (b) => {
      const member = await RawMqtt.open(b, 'member')
      await member.subscribe('$share/g/jobs', 1)
      const local: string[] = []
      await b.broker.subscribe('$share/g/jobs', (m) => local.push(m.payload.toString()))
      for (const n of ['1', '2', '3', '4']) await b.broker.publish({ topic: 'jobs', payload: n, qos: 1 })
      await member.until(() => member.publishes().length + local.length === 4, undefined, 'four jobs')
      await member.ping()
      const remote = member.publishes().map((p) => p.payload.toString())
      assert.equal(remote.length + local.length, 4, 'each job once')
      assert.ok(remote.length > 0 && local.length > 0, `both members served: ${JSON.stringify({ remote, local })}`)
    })
  })

  test('a malformed $share filter is refused with a clear error', async () => {
    await withBroker({}, async (b) => {
      await assert.rejects(b.broker.subscribe('$share/nofilter', () => {}), /\$share\/\{ShareName\}\/\{filter\}/)
      await assert.rejects(b.broker.subscribe('$share/g/jobs', () => {}, { retained: true }), TypeError)
    })
  })
})

test('broker.close() called twice returns the same promise', async () => {
  const b = await startBroker()
  const first = b.broker.close()
  assert.equal(b.broker.close(), first)
  await first
})
