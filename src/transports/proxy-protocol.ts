import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { AcceptRequest } from '../hooks/types.js'
import { log } from '../logging.js'
import type { ListenContext } from './transport.js'

/** Where a connection really comes from, per a PROXY protocol header. */
export interface ProxiedAddress {
  remoteAddress: string
  remotePort: number
}

/** PROXY protocol options of the tcp and tls transports. */
export interface ProxyProtocolOptions {
  /** Read a PROXY protocol v1 or v2 header (HAProxy, AWS NLB, ...) at the start of each connection. */
  proxyProtocol?: boolean
  /**
   * Addresses of the proxies allowed to send one. A connection from any other address that
   * starts with a PROXY header is refused; one without a header is served as it is.
   */
  trustedProxies?: string[]
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ')
/** The longest v1 header, and a bound on v2 address blocks we accept. */
const V1_MAX = 107
const V2_MAX = 16 + 536
const HEADER_TIMEOUT_MS = 5000

/** '::ffff:10.0.0.1' and '10.0.0.1' are the same peer: the IPv4 form of an IPv4-mapped IPv6 address. */
export function plainAddress(address: string | undefined): string {
  const lower = (address ?? '').toLowerCase()
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower
}

type Parsed = { kind: 'none' } | { kind: 'incomplete' } | { kind: 'bad'; why: string } | { kind: 'header'; length: number; address: ProxiedAddress | null }

function parse(buf: Buffer): Parsed {
  if (buf.length >= 1 && buf[0] === 0x50) {
    if (buf.length < V1_PREFIX.length) return V1_PREFIX.subarray(0, buf.length).equals(buf) ? { kind: 'incomplete' } : { kind: 'none' }
    if (!buf.subarray(0, V1_PREFIX.length).equals(V1_PREFIX)) return { kind: 'none' }
    const end = buf.indexOf('\r\n')
    if (end === -1) return buf.length >= V1_MAX ? { kind: 'bad', why: 'PROXY v1 line too long' } : { kind: 'incomplete' }
    const parts = buf.toString('latin1', 0, end).split(' ')
    if (parts[1] === 'UNKNOWN') return { kind: 'header', length: end + 2, address: null }
    if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) return { kind: 'bad', why: 'malformed PROXY v1 line' }
    const port = Number(parts[4])
    if (!Number.isInteger(port) || port < 0 || port > 65535) return { kind: 'bad', why: 'bad PROXY v1 port' }
    return { kind: 'header', length: end + 2, address: { remoteAddress: parts[2] as string, remotePort: port } }
  }
  if (buf.length >= 1 && buf[0] === 0x0d) {
    const n = Math.min(buf.length, V2_SIGNATURE.length)
    if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { kind: 'none' }
    if (buf.length < 16) return { kind: 'incomplete' }
    const versionCommand = buf[12] as number
    if (versionCommand >> 4 !== 2) return { kind: 'bad', why: 'PROXY v2 with an unknown version' }
    const length = 16 + buf.readUInt16BE(14)
    if (length > V2_MAX) return { kind: 'bad', why: 'PROXY v2 header too long' }
    if (buf.length < length) return { kind: 'incomplete' }
    // LOCAL (health checks from the proxy itself) keeps the proxy's own address.
    if ((versionCommand & 0x0f) === 0) return { kind: 'header', length, address: null }
    const family = buf[13] as number
    if (family === 0x11 && length >= 16 + 12) {
      const a = buf.subarray(16, 20)
      return { kind: 'header', length, address: { remoteAddress: `${a[0]}.${a[1]}.${a[2]}.${a[3]}`, remotePort: buf.readUInt16BE(24) } }
    }
    if (family === 0x21 && length >= 16 + 36) {
      const groups: string[] = []
      for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16))
      return { kind: 'header', length, address: { remoteAddress: groups.join(':'), remotePort: buf.readUInt16BE(48) } }
    }
    return { kind: 'header', length, address: null }
  }
  return { kind: 'none' }
}

/**
 * Reads a PROXY protocol header, if any, from the start of `socket`, and gives back the bytes
 * after it. Resolves to the real peer (or null: no header, or a header naming none); rejects,
 * for the caller to drop the connection, on a header from an untrusted address or a bad one.
 */
export function readProxyHeader(socket: Socket, trusted: ReadonlySet<string>): Promise<ProxiedAddress | null> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    const timer = setTimeout(() => finish(new Error('no data for the PROXY protocol header')), HEADER_TIMEOUT_MS)
    const finish = (error: Error | null, address: ProxiedAddress | null = null, consumed = 0): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.off('error', onError)
      if (error) return reject(error)
      socket.pause()
      if (buffered.length > consumed) socket.unshift(buffered.subarray(consumed))
      resolve(address)
    }
    const onClose = (): void => finish(new Error('closed before the PROXY protocol header'))
    // A peer may reset the connection before its header: an 'error' with no listener would end the process.
    const onError = (error: Error): void => finish(new Error(`socket error before the PROXY protocol header: ${error.message}`))
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      const parsed = parse(buffered)
      if (parsed.kind === 'incomplete') return
      if (parsed.kind === 'none') return finish(null)
      if (parsed.kind === 'bad') return finish(new Error(parsed.why))
      if (!trusted.has(plainAddress(socket.remoteAddress))) return finish(new Error(`PROXY header from untrusted ${socket.remoteAddress}`))
      finish(null, parsed.address, parsed.length)
    }
    socket.on('data', onData)
    socket.on('close', onClose)
    socket.on('error', onError)
  })
}

/** The trusted proxy set, with IPv4-mapped IPv6 addresses folded to IPv4. */
export function trustedSet(addresses: string[] | undefined): ReadonlySet<string> {
  return new Set((addresses ?? []).map(plainAddress))
}

/**
 * Asks the broker (`context.admit`) whether to serve a new socket, and says so; the caller drops
 * the socket when the answer is no. Never throws: an `admit` that throws refuses, since a check
 * that failed has not let the socket through. A socket already destroyed is refused without
 * asking: its 'close' may have passed, and an open connection counted for it would never be
 * taken back.
 */
export function admitSocket(context: ListenContext, request: AcceptRequest, socket: Duplex): boolean {
  if (socket.destroyed) return false
  if (context.admit === undefined) return true
  try {
    // The broker logs its own refusals.
    return context.admit(request, socket) === true
  } catch (error) {
    log.client('%s: refusing a connection from %s: admit threw %s', request.transport, request.remoteAddress, (error as Error)?.message)
    return false
  }
}

/**
 * Serves a new TCP socket of the tcp or tls transport once it is admitted and, with
 * `proxyProtocol`, once its PROXY header (if any) is read: calls `serve` with where the
 * connection comes from, or destroys the socket. A peer that is not a trusted proxy is admitted
 * at once by its own address, before a byte is read. A trusted proxy's connection is admitted
 * only once its header names the real client (or, with none, by the proxy's own address): the
 * proxy carries many clients, and counting it as one would put all of them under one client's
 * per-IP limits. Never throws.
 */
export function acceptSocket(
  socket: Socket,
  transport: string,
  context: ListenContext,
  proxyProtocol: boolean | undefined,
  trusted: ReadonlySet<string>,
  serve: (origin: ProxiedAddress | { remoteAddress: string | undefined; remotePort: number | undefined }) => void,
): void {
  const own = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
  const viaProxy = proxyProtocol === true && trusted.has(plainAddress(own.remoteAddress))
  if (!viaProxy && !admitSocket(context, { ...own, transport }, socket)) {
    socket.destroy()
    return
  }
  if (!proxyProtocol) return serve(own)
  readProxyHeader(socket, trusted).then(
    (real) => {
      const origin = real ?? own
      if (viaProxy && !admitSocket(context, { ...origin, transport }, socket)) {
        socket.destroy()
        return
      }
      serve(origin)
    },
    (error: Error) => {
      log.client('%s: refusing a connection from %s: %s', transport, own.remoteAddress, error.message)
      socket.destroy()
    },
  )
}
