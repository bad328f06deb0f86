/**
 * The transports ask `context.admit` about every new socket before anything else happens to it
 * (before TLS, the WebSocket upgrade or CONNECT), with the real client's address behind a trusted
 * proxy, and drop what it refuses without ever handing it to the broker. Tested on the transports
 * themselves, with real sockets and a hand-written admit.
 */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { test } from 'node:test'
import nodeTls from 'node:tls'
import type { ConnectionInfo } from '../../src/connection/connection.js'
import type { AcceptRequest } from '../../src/hooks/types.js'
import { tcp, tls, unix, websocket } from '../../src/index.js'
import { Counters } from '../../src/metrics/counters.js'
import { Protection } from '../../src/protection/protection.js'
import type { ListenContext, Listener, Transport } from '../../src/transports/transport.js'
import { skipWithout } from '../helpers/index.js'
import { makePki } from '../transports/certificates.js'
import { sendAndAwaitClose, upgradeRequest } from '../transports/raw-http.js'

/** A transport that ignored admit would leave a socket open: fail then, rather than hang. */
const LIMIT = { timeout: 10_000 }

type Socketish = Parameters<NonNullable<ListenContext['admit']>>[1]

/** A started transport with a scripted admit, recording what admit and onConnection saw. */
interface Harness {
  listener: Listener
  port: number
  asked: AcceptRequest[]
  /** The sockets admit was given, in order. */
  sockets: Socketish[]
  served: { stream: Duplex; info: ConnectionInfo }[]
  /** Resolves with the next connection handed to onConnection. */
  nextServed(): Promise<{ stream: Duplex; info: ConnectionInfo }>
  /** Closes the served streams, then the listener. */
  close(): Promise<void>
}

async function start(transport: Transport, admit: (request: AcceptRequest, socket: Socketish) => boolean): Promise<Harness> {
  const asked: AcceptRequest[] = []
  const sockets: Socketish[] = []
  const served: Harness['served'] = []
  const events = new EventEmitter()
  const listener = await transport.listen(
    (stream, info) => {
      stream.on('error', () => {})
      served.push({ stream, info })
      events.emit('served', { stream, info })
    },
    {
      maxPacketSize: 1 << 20,
      admit: (request, socket) => {
        asked.push(request)
        sockets.push(socket)
        return admit(request, socket)
      },
    },
  )
  const address = listener.address()
  return {
    listener,
    port: typeof address === 'object' && address !== null ? address.port : 0,
    asked,
    sockets,
    served,
    nextServed: () => new Promise((resolve) => events.once('served', resolve)),
    close: async () => {
      for (const { stream } of served) stream.destroy()
      await listener.close()
    },
  }
}

/** Connects; resolves once the server has closed the socket, with whatever it sent first. */
function connectAndAwaitClose(port: number, send?: Buffer | string): Promise<{ received: Buffer }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', () => {})
    socket.once('connect', () => {
      if (send !== undefined) socket.write(send)
    })
    socket.once('close', () => resolve({ received: Buffer.concat(chunks) }))
  })
}

function closed(socket: Socketish): Promise<void> {
  return new Promise((resolve) => void socket.once('close', resolve))
}

test('tcp: a refused socket is closed by the server and never reaches onConnection; an admitted one does', LIMIT, async () => {
  let allow = false
  const h = await start(tcp({ port: 0, host: '127.0.0.1' }), () => allow)
  try {
    await connectAndAwaitClose(h.port, Buffer.from([0x10, 0x00]))
    assert.equal(h.asked.length, 1)
    assert.deepEqual({ ...h.asked[0], remotePort: undefined }, { remoteAddress: '127.0.0.1', remotePort: undefined, transport: 'tcp' })
    assert.equal(typeof h.asked[0]?.remotePort, 'number')
    assert.equal(h.served.length, 0)

    allow = true
    const serving = h.nextServed()
    const client = net.connect(h.port, '127.0.0.1')
    const { info } = await serving
    assert.equal(info.transport, 'tcp')
    assert.equal(info.remoteAddress, '127.0.0.1')
    assert.equal(info.remotePort, client.localPort)
    // The socket admit was given is the served one: its 'close' is what per-IP counts watch.
    const gone = closed(h.sockets[1] as Socketish)
    client.destroy()
    await gone
  } finally {
    await h.close()
  }
})

test('tcp: an admit that throws refuses the socket, and the listener keeps serving', LIMIT, async () => {
  let calls = 0
  const h = await start(tcp({ port: 0, host: '127.0.0.1' }), () => {
    if (++calls === 1) throw new Error('host bug')
    return true
  })
  try {
    await connectAndAwaitClose(h.port)
    assert.equal(h.served.length, 0)
    const serving = h.nextServed()
    const client = net.connect(h.port, '127.0.0.1')
    await serving
    client.destroy()
  } finally {
    await h.close()
  }
})

test('tcp with a real Protection: the per-IP cap frees a slot when the served socket closes', LIMIT, async () => {
  const counters = new Counters()
  const protection = new Protection({ maxConnectionsPerIp: 1 }, counters)
  const h = await start(tcp({ port: 0, host: '127.0.0.1' }), (request, socket) => protection.admit(request, socket) === null)
  try {
    const serving = h.nextServed()
    const first = net.connect(h.port, '127.0.0.1')
    await serving
    await connectAndAwaitClose(h.port)
    assert.equal(counters.socketsRefused.per_ip_limit, 1)
    assert.equal(h.served.length, 1)

    const firstGone = closed(h.sockets[0] as Socketish)
    first.destroy()
    await firstGone
    const again = h.nextServed()
    const third = net.connect(h.port, '127.0.0.1')
    await again
    assert.equal(h.served.length, 2)
    third.destroy()
  } finally {
    await h.close()
  }
})

test('tcp with PROXY protocol: a trusted proxy is admitted by the address in its header, once, after the header', LIMIT, async () => {
  const h = await start(tcp({ port: 0, host: '127.0.0.1', proxyProtocol: true, trustedProxies: ['127.0.0.1'] }), (request) => request.remoteAddress !== '203.0.113.7')
  try {
    // Refused by the header's address: the proxy's own (127.0.0.1) would have passed.
    await connectAndAwaitClose(h.port, 'PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n')
    assert.deepEqual(h.asked, [{ remoteAddress: '203.0.113.7', remotePort: 51000, transport: 'tcp' }])
    assert.equal(h.served.length, 0)

    const serving = h.nextServed()
    const client = net.connect(h.port, '127.0.0.1')
    client.on('error', () => {})
    client.write('PROXY TCP4 198.51.100.2 10.0.0.1 40000 1883\r\n')
    const { info } = await serving
    assert.equal(info.remoteAddress, '198.51.100.2')
    assert.deepEqual(h.asked[1], { remoteAddress: '198.51.100.2', remotePort: 40000, transport: 'tcp' })
    assert.equal(h.asked.length, 2)
    client.destroy()
  } finally {
    await h.close()
  }
})

test('tcp with PROXY protocol: a peer that is not a trusted proxy is judged by its own address before it sends a byte', LIMIT, async () => {
  const h = await start(tcp({ port: 0, host: '127.0.0.1', proxyProtocol: true, trustedProxies: ['10.9.9.9'] }), () => false)
  try {
    // Sends nothing: the refusal cannot have waited for a header.
    await connectAndAwaitClose(h.port)
    assert.equal(h.asked.length, 1)
    assert.equal(h.asked[0]?.remoteAddress, '127.0.0.1')
    assert.equal(h.served.length, 0)
  } finally {
    await h.close()
  }
})

test('tls: a refused client sees the socket closed before any handshake completes; an admitted one completes it', { ...LIMIT, skip: skipWithout('openssl') }, async () => {
  const pki = makePki()
  let allow = false
  const h = await start(tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert }), () => allow)
  try {
    const outcome = await new Promise<{ secured: boolean; error: Error | undefined }>((resolve) => {
      let secured = false
      let error: Error | undefined
      const client = nodeTls.connect({ port: h.port, host: '127.0.0.1', ca: pki.ca, servername: 'localhost' })
      client.once('secureConnect', () => (secured = true))
      client.on('error', (e) => (error = e))
      client.once('close', () => resolve({ secured, error }))
    })
    assert.equal(outcome.secured, false)
    assert.ok(outcome.error, 'the handshake failed')
    assert.deepEqual({ ...h.asked[0], remotePort: undefined }, { remoteAddress: '127.0.0.1', remotePort: undefined, transport: 'tls' })
    assert.equal(h.served.length, 0)

    allow = true
    const serving = h.nextServed()
    const client = nodeTls.connect({ port: h.port, host: '127.0.0.1', ca: pki.ca, servername: 'localhost' })
    client.on('error', () => {})
    await new Promise<void>((resolve) => client.once('secureConnect', resolve))
    const { info } = await serving
    assert.equal(info.transport, 'tls')
    assert.equal(info.remotePort, client.localPort)
    client.destroy()
  } finally {
    await h.close()
  }
})

test('tls: a refused socket is dropped before the server reads its ClientHello (no ServerHello comes back)', { ...LIMIT, skip: skipWithout('openssl') }, async () => {
  const pki = makePki()
  const h = await start(tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert }), () => false)
  try {
    // A TLS 1.2 ClientHello record header and a bit: the server answers nothing, it just closes.
    const { received } = await connectAndAwaitClose(h.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]))
    assert.equal(received.length, 0)
    assert.equal(h.asked.length, 1)
  } finally {
    await h.close()
  }
})

test('tls with PROXY protocol: admit gets the address in the header, before the handshake', { ...LIMIT, skip: skipWithout('openssl') }, async () => {
  const pki = makePki()
  const h = await start(
    tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert, proxyProtocol: true, trustedProxies: ['127.0.0.1'] }),
    (request) => request.remoteAddress === '192.0.2.44',
  )
  try {
    const secureVia = (header: string): nodeTls.TLSSocket => {
      const raw = net.connect(h.port, '127.0.0.1')
      raw.on('error', () => {})
      raw.write(header)
      const secure = nodeTls.connect({ socket: raw, ca: pki.ca, servername: 'localhost' })
      secure.on('error', () => {})
      return secure
    }
    const refused = secureVia('PROXY TCP4 192.0.2.99 10.0.0.1 50000 8883\r\n')
    let refusedSecured = false
    refused.once('secureConnect', () => (refusedSecured = true))
    await new Promise<void>((resolve) => refused.once('close', resolve))
    assert.equal(refusedSecured, false)
    assert.deepEqual(h.asked, [{ remoteAddress: '192.0.2.99', remotePort: 50000, transport: 'tls' }])

    const serving = h.nextServed()
    const admitted = secureVia('PROXY TCP4 192.0.2.44 10.0.0.1 50123 8883\r\n')
    const { info } = await serving
    assert.equal(info.remoteAddress, '192.0.2.44')
    assert.equal(info.remotePort, 50123)
    assert.deepEqual(h.asked[1], { remoteAddress: '192.0.2.44', remotePort: 50123, transport: 'tls' })
    admitted.destroy()
  } finally {
    await h.close()
  }
})

test('websocket: a refused upgrade is answered 403 and closed, never upgraded; an admitted one reaches onConnection', LIMIT, async () => {
  let allow = false
  const h = await start(websocket({ port: 0, host: '127.0.0.1' }), () => allow)
  try {
    const answer = await sendAndAwaitClose(h.port, upgradeRequest('/mqtt'))
    assert.equal(answer.statusLine, 'HTTP/1.1 403 Forbidden')
    assert.deepEqual({ ...h.asked[0], remotePort: undefined }, { remoteAddress: '127.0.0.1', remotePort: undefined, transport: 'ws' })
    assert.equal(h.served.length, 0)

    allow = true
    const serving = h.nextServed()
    const client = net.connect(h.port, '127.0.0.1')
    client.on('error', () => {})
    const switched = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString('latin1').split('\r\n')[0] ?? '')))
    client.write(upgradeRequest('/mqtt'))
    const { info } = await serving
    assert.equal(info.transport, 'ws')
    assert.equal(await switched, 'HTTP/1.1 101 Switching Protocols')
    // The socket admit watched is the upgraded connection's own.
    const gone = closed(h.sockets[1] as Socketish)
    client.destroy()
    await gone
  } finally {
    await h.close()
  }
})

test('websocket: plain HTTP requests and upgrades for other paths are not admission matters', LIMIT, async () => {
  const h = await start(websocket({ port: 0, host: '127.0.0.1' }), () => false)
  try {
    const other = await sendAndAwaitClose(h.port, upgradeRequest('/elsewhere'))
    assert.equal(other.statusLine, 'HTTP/1.1 404 Not Found')
    assert.equal(h.asked.length, 0)
  } finally {
    await h.close()
  }
})

test('websocket behind a trusted proxy: admit gets the X-Forwarded-For address', LIMIT, async () => {
  const h = await start(websocket({ port: 0, host: '127.0.0.1', trustedProxies: ['127.0.0.1'] }), () => false)
  try {
    const answer = await sendAndAwaitClose(h.port, upgradeRequest('/mqtt', { 'X-Forwarded-For': '203.0.113.50' }))
    assert.equal(answer.statusLine, 'HTTP/1.1 403 Forbidden')
    assert.deepEqual(h.asked, [{ remoteAddress: '203.0.113.50', remotePort: undefined, transport: 'ws' }])
    assert.equal(h.served.length, 0)
  } finally {
    await h.close()
  }
})

test('unix: admit sees the socket path and transport; a refused socket is closed, never served', LIMIT, async () => {
  const path = join(tmpdir(), `culex-admit-${process.pid}-${Date.now()}.sock`)
  let allow = false
  const h = await start(unix({ path }), () => allow)
  try {
    await new Promise<void>((resolve) => {
      const socket = net.connect(path)
      socket.on('error', () => {})
      socket.once('close', () => resolve())
    })
    assert.deepEqual(h.asked, [{ remoteAddress: path, remotePort: undefined, transport: 'unix' }])
    assert.equal(h.served.length, 0)

    allow = true
    const serving = h.nextServed()
    const client = net.connect(path)
    const { info } = await serving
    assert.equal(info.transport, 'unix')
    client.destroy()
  } finally {
    await h.close()
  }
})
