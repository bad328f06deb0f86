/** Each transport with a real peer: tls (with client certificates), websocket (own port and attached), unix. */
import assert from 'node:assert/strict'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt, { MqttClient, type IClientOptions } from 'mqtt'
import { Broker, tls, unix, websocket, type AuthenticateRequest } from '../../src/index.js'
import { WebSocket } from 'ws'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { Packet } from '../../src/protocol/packets.js'
import { once, skipWithout, Waiters } from '../helpers/index.js'
import { makePki } from './certificates.js'

async function connected(client: MqttClient): Promise<MqttClient> {
  await once(client, 'connect', 5000)
  return client
}

/** Subscribes with one client, publishes with another, and checks the message arrives. */
async function roundTrip(open: (options: IClientOptions) => MqttClient): Promise<void> {
  const sub = await connected(open({ clientId: 'sub' }))
  const pub = await connected(open({ clientId: 'pub' }))
  await sub.subscribeAsync('t/#', { qos: 1 })
  const got = once<[string, Buffer]>(sub, 'message')
  await pub.publishAsync('t/x', 'over the transport', { qos: 1 })
  const [topic, payload] = await got
  assert.equal(topic, 't/x')
  assert.equal(payload.toString(), 'over the transport')
  sub.end(true)
  pub.end(true)
}

test('tls: a client certificate signed by the CA reaches authenticate; a stranger\'s is refused at the handshake', { skip: skipWithout('openssl') }, async () => {
  const pki = makePki('device-42')
  const seen: AuthenticateRequest[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), request.certificate?.subject.CN === 'device-42') })
  const listener = await broker.listen(tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: true }))
  const port = (listener.address() as AddressInfo).port
  try {
    await roundTrip((o) => mqtt.connect({ protocol: 'mqtts', host: '127.0.0.1', port, ca: pki.ca, key: pki.clientKey, cert: pki.clientCert, reconnectPeriod: 0, ...o }))
    assert.equal(seen[0]?.certificate?.subject.CN, 'device-42')
    assert.match(seen[0]?.certificate?.fingerprint256 ?? '', /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
    const stranger = mqtt.connect({ protocol: 'mqtts', host: '127.0.0.1', port, ca: pki.ca, key: pki.strangerKey, cert: pki.strangerCert, reconnectPeriod: 0, connectTimeout: 2000 })
    await new Promise<void>((resolve, reject) => {
      stranger.once('connect', () => reject(new Error('a certificate from another CA was accepted')))
      stranger.once('error', () => resolve())
      stranger.once('close', () => resolve())
    })
    stranger.end(true)
  } finally {
    await broker.close()
  }
})

test('websocket on its own port: mqtt over ws with the mqtt subprotocol', async () => {
  const broker = new Broker()
  const listener = await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))
  const port = (listener.address() as AddressInfo).port
  try {
    await roundTrip((o) => mqtt.connect(`ws://127.0.0.1:${port}/mqtt`, { reconnectPeriod: 0, ...o }))
  } finally {
    await broker.close()
  }
})

test('websocket attached to the host HTTP server: MQTT at /mqtt, the host keeps its routes and other upgrades', async () => {
  const server = http.createServer((req, res) => res.end(`host route ${req.url}`))
  const otherUpgrades: string[] = []
  server.on('upgrade', (req, socket) => {
    if (req.url !== '/mqtt') {
      otherUpgrades.push(req.url ?? '')
      socket.destroy()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  try {
    await roundTrip((o) => mqtt.connect(`ws://127.0.0.1:${port}/mqtt`, { reconnectPeriod: 0, ...o }))
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/health`)).text(), 'host route /health')
    const elsewhere = mqtt.connect(`ws://127.0.0.1:${port}/not-mqtt`, { reconnectPeriod: 0, connectTimeout: 1000 })
    await once(elsewhere, 'close', 10000)
    elsewhere.end(true)
    assert.deepEqual(otherUpgrades, ['/not-mqtt'])
  } finally {
    await broker.close()
    server.close()
  }
})

test('unix domain socket', async () => {
  const path = join(tmpdir(), `culex-${process.pid}-${Date.now()}.sock`)
  const broker = new Broker()
  const listener = await broker.listen(unix({ path }))
  try {
    assert.equal(listener.address(), path)
    // The mqtt client speaks over any stream it is given: here, a unix socket.
    await roundTrip((o) => new MqttClient(() => net.connect(path), { protocolVersion: 4, reconnectPeriod: 0, ...o }))
  } finally {
    await broker.close()
  }
})

test('wss: websocket attached to the host HTTPS server', { skip: skipWithout('openssl') }, async () => {
  const pki = makePki()
  const server = https.createServer({ key: pki.serverKey, cert: pki.serverCert }, (_req, res) => res.end('host'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  try {
    await roundTrip((o) => mqtt.connect(`wss://127.0.0.1:${port}/mqtt`, { ca: pki.ca, reconnectPeriod: 0, ...o }))
  } finally {
    await broker.close()
    server.close()
  }
})

test('websocket framing: subprotocol mqttv3.1, a packet split across frames, several packets in one frame', async () => {
  const broker = new Broker()
  const listener = await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))
  const port = (listener.address() as AddressInfo).port
  const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, 'mqttv3.1')
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    assert.equal(ws.protocol, 'mqttv3.1')
    const received: Packet[] = []
    const arrived = new Waiters()
    const decoder = new PacketDecoder((p) => {
      received.push(p)
      arrived.notify()
    })
    ws.on('message', (data: Buffer) => decoder.push(data))
    const connect = encodePacket({ type: 'connect', protocolName: 'MQIsdp', protocolVersion: 3, cleanSession: true, keepAlive: 0, clientId: 'framed' }, 3)
    // CONNECT in two frames.
    ws.send(connect.subarray(0, 5))
    ws.send(connect.subarray(5))
    // SUBSCRIBE and a PUBLISH to it in one frame.
    ws.send(
      Buffer.concat([
        encodePacket({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'f', qos: 0 }] }, 3),
        encodePacket({ type: 'publish', topic: 'f', payload: Buffer.from('one frame'), qos: 0, retain: false, dup: false, packetId: 0 }, 3),
      ]),
    )
    await arrived.until(() => received.length >= 3, 5000, () => `three packets; got ${received.map((p) => p.type).join(', ')}`)
    assert.deepEqual(received.map((p) => p.type), ['connack', 'suback', 'publish'])
    const publish = received[2]
    assert.ok(publish?.type === 'publish' && publish.payload.toString() === 'one frame')
  } finally {
    ws.close()
    await broker.close()
  }
})

test('unix: a regular file at the path is never removed; listening fails instead', async () => {
  const path = join(tmpdir(), `culex-not-a-socket-${process.pid}-${Date.now()}`)
  writeFileSync(path, 'precious')
  const broker = new Broker()
  try {
    await assert.rejects(broker.listen(unix({ path })))
    assert.equal(readFileSync(path, 'utf8'), 'precious')
  } finally {
    rmSync(path, { force: true })
    await broker.close()
  }
})
