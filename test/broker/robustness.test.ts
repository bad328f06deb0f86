/**
 * Edge cases of the embedding API and the handshake found in review: each failed before its fix.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { Broker, MemoryPersistence, tcp, type AuthenticateResult } from '../../src/index.js'
import { connect, expectClosedSilently, once, readConnack, seedSession, startBroker, wrapAdapter } from '../helpers/index.js'

test('broker.handle() during an async restore waits for it: the client resumes its stored session', async () => {
  const memory = new MemoryPersistence()
  seedSession(memory, 'early', [{ topicFilter: 'q', qos: 1 }], [{ topic: 'q', payload: Buffer.from('kept'), qos: 1, retain: false, receivedAt: Date.now() }])
  // The restore finishes only once the broker has been handed the client's connection.
  let restore: () => void = () => {}
  const restoring = new Promise<void>((resolve) => (restore = resolve))
  const slow = wrapAdapter(memory, { open: () => restoring.then(() => memory.open()) })
  const broker = new Broker({ persistence: slow })
  const server = net.createServer((socket) => {
    broker.handle(socket)
    restore()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const client = mqtt.connect({ host: '127.0.0.1', port, clientId: 'early', clean: false, protocolVersion: 4, reconnectPeriod: 0 })
  try {
    const message = once<[string, Buffer]>(client, 'message')
    const [connack] = await once<[{ sessionPresent: boolean }]>(client, 'connect')
    assert.equal(connack.sessionPresent, true)
    assert.equal((await message)[1].toString(), 'kept')
  } finally {
    client.end(true)
    server.close()
    await broker.close()
  }
})

test('limits the broker cannot honour are refused at construction', () => {
  assert.throws(() => new Broker({ limits: { maxInflight: 100_000 } }), RangeError)
  assert.throws(() => new Broker({ limits: { maxInflight: 0 } }), RangeError)
  assert.throws(() => new Broker({ limits: { maxKeepAlive: 70_000 } }), RangeError)
  assert.throws(() => new Broker({ limits: { maxPacketSize: Number.NaN } }), RangeError)
  assert.equal(new Broker({ limits: { maxInflight: 65_535 } }).limits.maxInflight, 65_535)
})

test('a will topic that is not a valid topic name closes the connection without CONNACK', async () => {
  const b = await startBroker()
  try {
    for (const topic of ['a/#', 'a/+', '']) {
      const raw = await b.raw()
      // [MQTT-3.3.2-2] [MQTT-4.7.3-1]
      await expectClosedSilently(raw, connect({ clientId: 'w', will: { topic, payload: Buffer.from('x'), qos: 0, retain: false } }), `will topic ${JSON.stringify(topic)}`)
    }
  } finally {
    await b.close()
  }
})

test('authenticate answers other than true, false or { reasonCode: 1..5 } refuse with 5, never accept', async () => {
  const answers: unknown[] = [undefined, {}, 1, { reasonCode: 0 }, { reasonCode: 0x87 }, { reasonCode: 3 }]
  let i = 0
  const b = await startBroker({ authenticate: () => answers[i] as AuthenticateResult })
  try {
    const codes: number[] = []
    for (i = 0; i < answers.length; i++) {
      const raw = await b.raw()
      raw.write(connect({ clientId: `c${i}` }))
      codes.push((await readConnack(raw)).returnCode)
      await raw.waitClosed()
    }
    assert.deepEqual(codes, [5, 5, 5, 5, 5, 3])
  } finally {
    await b.close()
  }
})

test('an MQTT 3.1 client resuming its session gets CONNACK flags 0 (3.1 has no session present bit)', async () => {
  const b = await startBroker()
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      const raw = await b.raw()
      raw.write(connect({ clientId: 'old-timer', protocolVersion: 3, cleanSession: false }))
      const connack = await readConnack(raw)
      assert.deepEqual(connack, { sessionPresent: 0, returnCode: 0 })
      await raw.drop(b, 'old-timer')
    }
  } finally {
    await b.close()
  }
})

test('close() while listen() is starting leaves no port open', async () => {
  const broker = new Broker()
  const listening = broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
  const closing = broker.close()
  await assert.rejects(listening, /closed/)
  await closing
  await assert.rejects(broker.publish({ topic: 'a' }), /closed/)
  await assert.rejects(broker.subscribe('a', () => {}), /closed/)
})

test('broker.publish copies the payload: a caller reusing its buffer does not change a retained message', async () => {
  const b = await startBroker()
  try {
    const buffer = Buffer.from('v1')
    await b.broker.publish({ topic: 'state', payload: buffer, retain: true })
    buffer.write('XX')
    const client = await b.connect({ clientId: 'late' })
    const message = once<[string, Buffer]>(client, 'message')
    await client.subscribeAsync('state')
    assert.equal((await message)[1].toString(), 'v1')
  } finally {
    await b.close()
  }
})

test('sockets that never send CONNECT count against maxConnections: past a small headroom they are closed at once', async () => {
  const b = await startBroker({ limits: { maxConnections: 2 } })
  try {
    const idle = []
    for (let i = 0; i < 18; i++) idle.push(await b.raw())
    const extra = await b.raw()
    await extra.waitClosed()
    assert.equal(extra.received.length, 0)
    assert.ok(idle.every((r) => !r.closed), 'the sockets within the headroom stay open until their connect timeout')
  } finally {
    await b.close()
  }
})
