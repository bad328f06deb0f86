/** PROXY protocol v1 and v2 on the tcp transport: the real client address reaches hooks and events. */
import assert from 'node:assert/strict'
import net, { type AddressInfo } from 'node:net'
import { test } from 'node:test'
import nodeTls from 'node:tls'
import { Broker, tcp, tls, type AuthenticateRequest } from '../../src/index.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import { readProxyHeader, trustedSet, type ProxiedAddress } from '../../src/transports/proxy-protocol.js'
import { skipWithout } from '../helpers/index.js'
import { makePki } from './certificates.js'

const CONNECT = encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanSession: true, keepAlive: 0, clientId: 'behind-proxy' }, 4)

function v2Header(ip: number[], port: number): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
  const body = Buffer.alloc(12)
  Buffer.from(ip).copy(body, 0)
  Buffer.from([10, 0, 0, 1]).copy(body, 4)
  body.writeUInt16BE(port, 8)
  body.writeUInt16BE(1883, 10)
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, 0x00, 12]), body])
}

/** Sends `bytes` to the broker; resolves to the first bytes it answers, or null if it closed first. */
async function exchange(port: number, bytes: Buffer): Promise<Buffer | null> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  socket.write(bytes)
  return new Promise((resolve) => {
    socket.once('data', (d: Buffer) => {
      socket.destroy()
      resolve(d)
    })
    socket.once('close', () => resolve(null))
  })
}

async function withBroker(trustedProxies: string[], body: (port: number, seen: AuthenticateRequest[]) => Promise<void>): Promise<void> {
  const seen: AuthenticateRequest[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
  const listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1', proxyProtocol: true, trustedProxies }))
  try {
    await body((listener.address() as AddressInfo).port, seen)
  } finally {
    await broker.close()
  }
}

test('PROXY v1 from a trusted proxy: the client address in the header reaches authenticate', async () => {
  await withBroker(['127.0.0.1'], async (port, seen) => {
    const answer = await exchange(port, Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n'), CONNECT]))
    assert.equal(answer?.[0], 0x20)
    assert.equal(seen[0]?.remoteAddress, '203.0.113.7')
  })
})

test('PROXY v2 from a trusted proxy: the client address in the header reaches authenticate', async () => {
  await withBroker(['127.0.0.1'], async (port, seen) => {
    const answer = await exchange(port, Buffer.concat([v2Header([198, 51, 100, 9], 40000), CONNECT]))
    assert.equal(answer?.[0], 0x20)
    assert.equal(seen[0]?.remoteAddress, '198.51.100.9')
    assert.equal(seen[0]?.remotePort, 40000)
  })
})

test('a PROXY v2 header split across reads is put together; the bytes after it are left for the broker', async () => {
  const header = v2Header([198, 51, 100, 9], 40000)
  const bytes = Buffer.concat([header, CONNECT])
  let firstChunk: (length: number) => void = () => {}
  const firstChunkSeen = new Promise<number>((resolve) => (firstChunk = resolve))
  const outcome = new Promise<{ address: ProxiedAddress | null; rest: Buffer }>((resolve, reject) => {
    const server = net.createServer((socket) => {
      // Sees what readProxyHeader sees: the client sends the rest only after this first read.
      const spy = (chunk: Buffer): void => {
        socket.off('data', spy)
        firstChunk(chunk.length)
      }
      socket.on('data', spy)
      readProxyHeader(socket, trustedSet(['127.0.0.1'])).then((address) => {
        let rest = Buffer.alloc(0)
        socket.on('data', (chunk: Buffer) => {
          rest = Buffer.concat([rest, chunk])
          if (rest.length < CONNECT.length) return
          socket.destroy()
          server.close()
          resolve({ address, rest })
        })
        socket.resume()
      }, reject)
    })
    server.listen(0, '127.0.0.1', () => {
      const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1', () => {
        client.write(bytes.subarray(0, 7))
        void firstChunkSeen.then(() => client.end(bytes.subarray(7)))
      })
      client.on('error', () => {})
    })
  })
  assert.ok((await firstChunkSeen) <= 7, 'the first read held only part of the header')
  const { address, rest } = await outcome
  assert.deepEqual(address, { remoteAddress: '198.51.100.9', remotePort: 40000 })
  assert.ok(rest.equals(CONNECT))
})

test('a PROXY header from an untrusted address is refused; a plain connection from it is served', async () => {
  await withBroker(['10.9.9.9'], async (port, seen) => {
    assert.equal(await exchange(port, Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n'), CONNECT])), null)
    assert.equal(seen.length, 0)
    const answer = await exchange(port, CONNECT)
    assert.equal(answer?.[0], 0x20)
    assert.equal(seen[0]?.remoteAddress, '127.0.0.1')
  })
})

test('PROXY v1 before the TLS handshake on a tls listener: the real address and the client certificate both reach authenticate', { skip: skipWithout('openssl') }, async () => {
  const pki = makePki('device-7')
  const seen: AuthenticateRequest[] = []
  const broker = new Broker({ authenticate: (request) => (seen.push(request), true) })
  const listener = await broker.listen(
    tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: true, proxyProtocol: true, trustedProxies: ['127.0.0.1'] }),
  )
  const port = (listener.address() as AddressInfo).port
  try {
    // The "proxy": a raw connection that sends the header in clear, then carries the client's TLS.
    const raw = net.connect(port, '127.0.0.1')
    await new Promise<void>((resolve) => raw.once('connect', resolve))
    raw.write('PROXY TCP4 192.0.2.44 10.0.0.1 50123 8883\r\n')
    const secure = nodeTls.connect({ socket: raw, ca: pki.ca, key: pki.clientKey, cert: pki.clientCert, servername: 'localhost' })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve)
      secure.once('error', reject)
    })
    secure.write(CONNECT)
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error('no CONNACK')), 10000)
      secure.once('data', (data: Buffer) => {
        clearTimeout(deadline)
        resolve(data)
      })
    })
    assert.equal(answer[0], 0x20)
    assert.equal(seen[0]?.remoteAddress, '192.0.2.44')
    assert.equal(seen[0]?.certificate?.subject.CN, 'device-7')
    secure.destroy()
  } finally {
    await broker.close()
  }
})

test('a peer that resets its connection while the PROXY header is awaited is dropped; the broker keeps serving', async () => {
  await withBroker(['127.0.0.1'], async (port) => {
    for (const bytes of [Buffer.alloc(0), Buffer.from('PROXY TCP4 ')]) {
      const socket = net.connect(port, '127.0.0.1')
      await new Promise<void>((resolve) => socket.once('connect', resolve))
      if (bytes.length > 0) await new Promise<void>((resolve) => socket.write(bytes, () => resolve()))
      // An RST, not a FIN: the server's socket gets ECONNRESET while reading the header.
      socket.resetAndDestroy()
      await new Promise<void>((resolve) => socket.once('close', () => resolve()))
    }
    // Still alive and serving: a proper connection through the proxy gets its CONNACK.
    const answer = await exchange(port, Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.1 5555 1883\r\n'), CONNECT]))
    assert.deepEqual(answer, Buffer.from([0x20, 0x02, 0x00, 0x00]))
  })
})
