/** Raw HTTP upgrades and WebSocket frames over a plain socket, for tests that need exact bytes. */
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { Waiters } from '../helpers/index.js'

/** The request lines of a WebSocket upgrade for `target` (a path, or anything else for malformed requests). */
export function upgradeRequest(target: string, headers: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Protocol': 'mqtt',
    ...headers,
  }
  return `GET ${target} HTTP/1.1\r\n${Object.entries(all)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`
}

/** What the server answered and whether it then closed the connection. */
export interface Answer {
  /** Everything the server sent, as latin1 text. */
  text: string
  /** The first line, e.g. 'HTTP/1.1 404 Not Found'. */
  statusLine: string
}

/**
 * Sends `request` and resolves once the server has closed the connection, with everything it
 * sent. Rejects after `ms` if the socket is still open: the server left the request hanging.
 */
export function sendAndAwaitClose(port: number, request: string, ms = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      reject(new Error(`the server left the socket open for ${ms} ms; it had sent ${JSON.stringify(text)}`))
    }, ms)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.once('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      resolve({ text, statusLine: text.split('\r\n')[0] ?? '' })
    })
    socket.once('connect', () => socket.write(request))
  })
}

/** A WebSocket frame the server sent. */
export interface Frame {
  opcode: number
  payload: Buffer
}

/** A client-side WebSocket over a raw socket: sends hand-made frames, reads the server's. */
export class RawWebSocket {
  private buffered = Buffer.alloc(0)
  private readonly frames: Frame[] = []
  private closed = false
  private readonly waiters = new Waiters()

  private constructor(readonly socket: net.Socket, rest: Buffer) {
    socket.on('data', (chunk: Buffer) => this.take(chunk))
    socket.on('close', () => {
      this.closed = true
      this.waiters.notify()
    })
    socket.on('error', () => {})
    this.take(rest)
  }

  /** Upgrades a new connection at `path`; rejects unless the server answers 101. */
  static open(port: number, path: string): Promise<RawWebSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1')
      let head = Buffer.alloc(0)
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk])
        const end = head.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.off('data', onData)
        const status = head.toString('latin1', 0, head.indexOf('\r\n'))
        if (!status.startsWith('HTTP/1.1 101')) {
          socket.destroy()
          reject(new Error(`upgrade refused: ${status}`))
          return
        }
        resolve(new RawWebSocket(socket, head.subarray(end + 4)))
      }
      socket.on('data', onData)
      socket.once('error', reject)
      socket.once('connect', () => socket.write(upgradeRequest(path)))
    })
  }

  /** A masked client frame header announcing `length` payload bytes (the payload is not included). */
  static header(opcode: number, length: number, mask: Buffer): Buffer {
    const fin = 0x80 | opcode
    if (length < 126) return Buffer.concat([Buffer.from([fin, 0x80 | length]), mask])
    if (length < 65536) {
      const h = Buffer.from([fin, 0x80 | 126, 0, 0])
      h.writeUInt16BE(length, 2)
      return Buffer.concat([h, mask])
    }
    const h = Buffer.alloc(10)
    h[0] = fin
    h[1] = 0x80 | 127
    h.writeBigUInt64BE(BigInt(length), 2)
    return Buffer.concat([h, mask])
  }

  /** Sends a complete masked binary frame. */
  sendBinary(payload: Buffer): void {
    const mask = randomBytes(4)
    const masked = Buffer.from(payload)
    for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (mask[i % 4] as number)
    this.socket.write(Buffer.concat([RawWebSocket.header(0x2, payload.length, mask), masked]))
  }

  /** Waits for the next frame from the server, or null once the connection has closed without one. */
  async nextFrame(ms = 5000): Promise<Frame | null> {
    await this.waiters.until(() => this.frames.length > 0 || this.closed, ms, 'a frame from the server')
    return this.frames.shift() ?? null
  }

  /** Waits until the server closes the TCP connection. */
  async waitClosed(ms = 5000): Promise<void> {
    while ((await this.nextFrame(ms)) !== null) {
      // drain frames until the close
    }
  }

  private take(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk])
    for (;;) {
      const b = this.buffered
      if (b.length < 2) return
      let length = (b[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (b.length < 4) return
        length = b.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (b.length < 10) return
        length = Number(b.readBigUInt64BE(2))
        offset = 10
      }
      if (b.length < offset + length) return
      this.frames.push({ opcode: (b[0] as number) & 0x0f, payload: b.subarray(offset, offset + length) })
      this.buffered = b.subarray(offset + length)
      this.waiters.notify()
    }
  }
}
