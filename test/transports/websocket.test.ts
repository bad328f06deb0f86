/**
 * The WebSocket transport with real peers: what reaches authenticate (transport name, the upgrade
 * request, a trusted proxy's X-Forwarded-For), the frame size cap, upgrades for other paths, and
 * the host server closing first.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import Fastify from 'fastify'
import mqtt, { MqttClient, type IClientOptions } from 'mqtt'
import { Broker, tcp, tls, unix, websocket, type AuthenticateRequest, type Client } from '../../src/index.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { Packet } from '../../src/protocol/packets.js'
import { skipWithout } from '../helpers/index.js'
import { makePki } from './certificates.js'
import { RawWebSocket, sendAndAwaitClose, upgradeRequest } from './raw-http.js'

async function connected(client: MqttClient, ms = 5000): Promise<MqttClient> {
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no CONNACK')), ms)
    client.once('connect', () => (clearTimeout(t), resolve()))
    client.once('error', (e) => (clearTimeout(t), reject(e)))
  })
  return client
}

function ws(port: number, path = '/mqtt', options: IClientOptions = {}): MqttClient {
  return mqtt.connect(`ws://127.0.0.1:${port}${path}`, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
}

async function hostServer(handler: http.RequestListener = (_req, res) => res.end('host')): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

/** Rejects with `why` if `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

const CONNECT = encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanSession: true, keepAlive: 0, clientId: 'raw' }, 4)

test('every transport names itself to authenticate and to the client: tcp, unix, ws', async () => {
  const seen: AuthenticateRequest[] = []
  const clients: Client[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
  broker.on('clientConnect', (client) => clients.push(client))
  const path = join(tmpdir(), `culex-names-${process.pid}-${Date.now()}.sock`)
  const tcpPort = ((await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  await broker.listen(unix({ path }))
  const wsPort = ((await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  const opened: MqttClient[] = []
  try {
    opened.push(await connected(mqtt.connect({ host: '127.0.0.1', port: tcpPort, clientId: 'over-tcp', reconnectPeriod: 0 })))
    opened.push(await connected(new MqttClient(() => net.connect(path), { clientId: 'over-unix', protocolVersion: 4, reconnectPeriod: 0 })))
    opened.push(await connected(ws(wsPort, '/mqtt', { clientId: 'over-ws' })))
    assert.deepEqual(
      seen.map((r) => [r.clientId, r.transport]),
      [['over-tcp', 'tcp'], ['over-unix', 'unix'], ['over-ws', 'ws']],
    )
    assert.deepEqual(clients.map((c) => c.transport), ['tcp', 'unix', 'ws'])
    assert.equal(seen[0]?.request, undefined)
  } finally {
    for (const c of opened) c.end(true)
    await broker.close()
  }
})

test('tls and wss name themselves too', { skip: skipWithout('openssl') }, async () => {
  const pki = makePki()
  const seen: AuthenticateRequest[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
  const tlsPort = ((await broker.listen(tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert }))).address() as AddressInfo).port
  const server = https.createServer({ key: pki.serverKey, cert: pki.serverCert }, (_req, res) => res.end('host'))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const wssPort = (server.address() as AddressInfo).port
  await broker.listen(websocket({ server, path: '/mqtt' }))
  const opened: MqttClient[] = []
  try {
    opened.push(await connected(mqtt.connect({ protocol: 'mqtts', host: '127.0.0.1', port: tlsPort, ca: pki.ca, clientId: 'over-tls', reconnectPeriod: 0 })))
    opened.push(await connected(mqtt.connect(`wss://127.0.0.1:${wssPort}/mqtt`, { ca: pki.ca, clientId: 'over-wss', reconnectPeriod: 0 })))
    assert.deepEqual(
      seen.map((r) => [r.clientId, r.transport]),
      [['over-tls', 'tls'], ['over-wss', 'wss']],
    )
  } finally {
    for (const c of opened) c.end(true)
    await broker.close()
    server.close()
  }
})

test('ws: authenticate and the client see the upgrade request: cookie, Authorization and ?token=', async () => {
  const seen: AuthenticateRequest[] = []
  const clients: Client[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
  broker.on('clientConnect', (client) => clients.push(client))
  const { server, port } = await hostServer()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  const client = ws(port, '/mqtt?token=t0k3n', { clientId: 'browser', wsOptions: { headers: { cookie: 'session=abc', authorization: 'Bearer xyz' } } })
  try {
    await connected(client)
    const request = seen[0]?.request
    assert.ok(request !== undefined)
    assert.equal(request.url, '/mqtt?token=t0k3n')
    assert.equal(new URL(request.url ?? '', 'http://x').searchParams.get('token'), 't0k3n')
    assert.equal(request.headers.cookie, 'session=abc')
    assert.equal(request.headers.authorization, 'Bearer xyz')
    assert.equal(seen[0]?.transport, 'ws')
    assert.equal(typeof seen[0]?.remotePort, 'number')
    assert.equal(clients[0]?.request, request)
  } finally {
    client.end(true)
    await broker.close()
    server.close()
  }
})

test('ws: a frame announcing more than maxPacketSize is refused from its header alone with close code 1009', async () => {
  const broker = new Broker({ limits: { maxPacketSize: 1000 } })
  const port = ((await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  try {
    const raw = await RawWebSocket.open(port, '/mqtt')
    // Only the header: the broker must decide without waiting for (or buffering) the payload.
    raw.socket.write(RawWebSocket.header(0x2, 1001, Buffer.from([1, 2, 3, 4])))
    const frame = await raw.nextFrame()
    assert.equal(frame?.opcode, 0x8, 'a close frame')
    assert.equal(frame?.payload.readUInt16BE(0), 1009)
    await raw.waitClosed()
  } finally {
    await broker.close()
  }
})

test('ws: the default cap is the default maxPacketSize (1 MiB), not ws\'s 100 MiB', async () => {
  const broker = new Broker()
  const port = ((await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  try {
    const raw = await RawWebSocket.open(port, '/mqtt')
    raw.socket.write(RawWebSocket.header(0x2, 1024 * 1024 + 1, Buffer.from([1, 2, 3, 4])))
    const frame = await raw.nextFrame()
    assert.equal(frame?.opcode, 0x8)
    assert.equal(frame?.payload.readUInt16BE(0), 1009)
  } finally {
    await broker.close()
  }
})

test('ws: a packet of exactly maxPacketSize in one frame is served', async () => {
  const limit = 1000
  const broker = new Broker({ limits: { maxPacketSize: limit } })
  const port = ((await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  const raw = await RawWebSocket.open(port, '/mqtt')
  try {
    const received: Packet[] = []
    const decoder = new PacketDecoder((p) => received.push(p))
    const next = async (): Promise<Packet> => {
      while (received.length === 0) {
        const frame = await raw.nextFrame()
        assert.ok(frame !== null && frame.opcode === 0x2, 'a binary frame')
        decoder.push(frame.payload)
      }
      return received.shift() as Packet
    }
    raw.sendBinary(CONNECT)
    assert.equal((await next()).type, 'connack')
    raw.sendBinary(encodePacket({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 0 }] }, 4))
    assert.equal((await next()).type, 'suback')
    const empty = encodePacket({ type: 'publish', topic: 'big', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, packetId: 0 }, 4)
    // Fixed header 2 bytes for a remaining length under 128, 3 bytes from 128 to 16383.
    const payload = Buffer.alloc(limit - empty.length - 1, 7)
    const publish = encodePacket({ type: 'publish', topic: 'big', payload, qos: 0, retain: false, dup: false, packetId: 0 }, 4)
    assert.equal(publish.length, limit)
    raw.sendBinary(publish)
    const echoed = await next()
    assert.ok(echoed.type === 'publish' && echoed.payload.equals(payload))
  } finally {
    raw.socket.destroy()
    await broker.close()
  }
})

test('ws attached with no other upgrade listener: another path gets 404, a malformed target 400, and the socket closes', async () => {
  const { server, port } = await hostServer()
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  try {
    const other = await sendAndAwaitClose(port, upgradeRequest('/chat'))
    assert.equal(other.statusLine, 'HTTP/1.1 404 Not Found')
    const malformed = await sendAndAwaitClose(port, upgradeRequest('mqtt'))
    assert.equal(malformed.statusLine, 'HTTP/1.1 400 Bad Request')
    // A look-alike that is not the path: query strings are not part of it, prefixes do not count.
    assert.equal((await sendAndAwaitClose(port, upgradeRequest('/mqtt/x'))).statusLine, 'HTTP/1.1 404 Not Found')
    // The MQTT path still works, with a query string.
    const client = await connected(ws(port, '/mqtt?x=1'))
    client.end(true)
  } finally {
    await broker.close()
    server.close()
  }
})

test('ws attached next to a host upgrade listener: other paths are left to it, untouched', async () => {
  const { server, port } = await hostServer()
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  // Added after the broker's, answering a turn later (as a router would): only its answer may reach the client.
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    if (req.url === '/mqtt') return
    setImmediate(() => socket.end(`HTTP/1.1 418 I'm a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`))
  })
  try {
    const answer = await sendAndAwaitClose(port, upgradeRequest('/chat'))
    assert.equal(answer.text, `HTTP/1.1 418 I'm a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
    const client = await connected(ws(port))
    client.end(true)
  } finally {
    await broker.close()
    server.close()
  }
})

test('ws on its own port: another path gets 404 (upgrade or not), the MQTT path without upgrade 426', async () => {
  const broker = new Broker()
  const port = ((await broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
  try {
    assert.equal((await sendAndAwaitClose(port, upgradeRequest('/elsewhere'))).statusLine, 'HTTP/1.1 404 Not Found')
    assert.equal((await fetch(`http://127.0.0.1:${port}/elsewhere`)).status, 404)
    assert.equal((await fetch(`http://127.0.0.1:${port}/mqtt`)).status, 426)
  } finally {
    await broker.close()
  }
})

test('two brokers attached to one server at different paths each get theirs; any other path gets 404; the same path twice is refused', async () => {
  const { server, port } = await hostServer()
  const a = new Broker()
  const b = new Broker()
  const seenA: string[] = []
  const seenB: string[] = []
  a.on('clientConnect', (c) => seenA.push(c.id))
  b.on('clientConnect', (c) => seenB.push(c.id))
  await a.listen(websocket({ server, path: '/a' }))
  await b.listen(websocket({ server, path: '/b' }))
  try {
    await assert.rejects(new Broker().listen(websocket({ server, path: '/a' })), /already/)
    const ca = await connected(ws(port, '/a', { clientId: 'to-a' }))
    const cb = await connected(ws(port, '/b', { clientId: 'to-b' }))
    assert.deepEqual([seenA, seenB], [['to-a'], ['to-b']])
    assert.equal((await sendAndAwaitClose(port, upgradeRequest('/c'))).statusLine, 'HTTP/1.1 404 Not Found')
    ca.end(true)
    cb.end(true)
  } finally {
    await a.close()
    await b.close()
    server.close()
  }
})

test('after the broker closes, the host server no longer answers upgrades on its behalf', async () => {
  const { server, port } = await hostServer()
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  await broker.close()
  try {
    assert.equal(server.listenerCount('upgrade'), 0)
    // With no upgrade listener Node serves the request as plain HTTP: the host's handler answers.
    const answer = await sendAndAwaitClose(port, upgradeRequest('/mqtt', { Connection: 'Upgrade, close' }))
    assert.match(answer.text, /^HTTP\/1\.1 200 OK[\s\S]*host$/)
  } finally {
    server.close()
  }
})

/** Connects through `path` with these X-Forwarded-For headers; resolves to the address authenticate saw. */
async function forwardedAddress(port: number, path: string, seen: AuthenticateRequest[], xff: string | undefined): Promise<string | undefined> {
  const before = seen.length
  const client = ws(port, path, { wsOptions: { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } } })
  try {
    await connected(client)
  } finally {
    client.end(true)
  }
  return seen[before]?.remoteAddress
}

for (const mode of ['own port', 'attached'] as const) {
  test(`ws (${mode}): X-Forwarded-For counts only from a trusted proxy, read right to left up to the first untrusted address`, async () => {
    const seen: AuthenticateRequest[] = []
    const clients: Client[] = []
    const start = async (trustedProxies: string[]): Promise<{ port: number; close: () => Promise<void> }> => {
      const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
      broker.on('clientConnect', (c) => clients.push(c))
      if (mode === 'own port') {
        const listener = await broker.listen(websocket({ port: 0, host: '127.0.0.1', trustedProxies }))
        return { port: (listener.address() as AddressInfo).port, close: () => broker.close() }
      }
      const { server, port } = await hostServer()
      await broker.listen(websocket({ server, path: '/mqtt', trustedProxies }))
      return {
        port,
        close: async () => {
          await broker.close()
          server.close()
        },
      }
    }
    const trusted = await start(['127.0.0.1', '10.0.0.2'])
    try {
      assert.equal(await forwardedAddress(trusted.port, '/mqtt', seen, '203.0.113.9'), '203.0.113.9')
      assert.equal(seen.at(-1)?.remotePort, undefined, 'the proxy\'s port is not the client\'s')
      assert.equal(clients.at(-1)?.remoteAddress, '203.0.113.9')
      // A client may send its own header; the proxies append: only the right-most untrusted entry counts.
      assert.equal(await forwardedAddress(trusted.port, '/mqtt', seen, '6.6.6.6, 198.51.100.4, 10.0.0.2'), '198.51.100.4')
      assert.equal(await forwardedAddress(trusted.port, '/mqtt', seen, '2001:db8::7'), '2001:db8::7')
      // Not an address: the walk stops at the last trusted hop.
      assert.equal(await forwardedAddress(trusted.port, '/mqtt', seen, 'unknown'), '127.0.0.1')
      assert.equal(await forwardedAddress(trusted.port, '/mqtt', seen, undefined), '127.0.0.1')
    } finally {
      await trusted.close()
    }
    const untrusted = await start(['10.0.0.2'])
    try {
      assert.equal(await forwardedAddress(untrusted.port, '/mqtt', seen, '203.0.113.9'), '127.0.0.1')
      assert.equal(typeof seen.at(-1)?.remotePort, 'number')
    } finally {
      await untrusted.close()
    }
  })
}

test('closing the host server first (Express order: server.close(cb), then the broker) completes with WebSocket clients connected', async () => {
  const { server, port } = await hostServer()
  const broker = new Broker()
  await broker.listen(websocket({ server, path: '/mqtt' }))
  const a = await connected(ws(port, '/mqtt', { clientId: 'a' }))
  const b = await connected(ws(port, '/mqtt', { clientId: 'b', protocolVersion: 5 }))
  const closedA = new Promise<void>((resolve) => a.once('close', () => resolve()))
  const closedB = new Promise<void>((resolve) => b.once('close', () => resolve()))
  try {
    await within(
      new Promise<void>((resolve) => server.close(() => void broker.close().then(resolve))),
      10000,
      'server.close(cb) never called back: the upgraded WebSocket sockets keep the host server open',
    )
    await within(Promise.all([closedA, closedB]), 10000, 'the clients were not disconnected')
  } finally {
    a.end(true)
    b.end(true)
    await broker.close()
  }
})

test('Fastify: app.close() completes with WebSocket clients connected, whether the broker closes in preClose or in onClose (after the server)', async () => {
  for (const hook of ['preClose', 'onClose'] as const) {
    const app = Fastify()
    const broker = new Broker()
    if (hook === 'preClose') app.addHook('preClose', async () => broker.close())
    else app.addHook('onClose', async () => broker.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    await broker.listen(websocket({ server: app.server, path: '/mqtt' }))
    const port = (app.server.address() as AddressInfo).port
    const client = await connected(ws(port, '/mqtt', { clientId: `fastify-${hook}` }))
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    try {
      await within(app.close(), 10000, `app.close() with the broker closed in ${hook} never completed`)
      await within(closed, 10000, 'the client was not disconnected')
    } finally {
      client.end(true)
      await broker.close()
    }
  }
})
