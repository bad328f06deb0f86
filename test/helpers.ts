import { accessSync, constants } from 'node:fs'
import net from 'node:net'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { Broker, tcp, type BrokerOptions } from '../src/index.js'

export interface TestBroker {
  broker: Broker
  port: number
  /** Connects an `mqtt` client (protocol 3.1.1 unless told otherwise) and waits for CONNACK. */
  connect(options?: IClientOptions): Promise<MqttClient>
  /** Opens a raw TCP socket to the broker. */
  raw(): Promise<RawClient>
  close(): Promise<void>
}

/** Starts a broker on an ephemeral loopback port. */
export async function startBroker(options: BrokerOptions = {}): Promise<TestBroker> {
  const broker = new Broker(options)
  const listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const port = address.port
  const clients: MqttClient[] = []
  const raws: RawClient[] = []
  return {
    broker,
    port,
    connect: async (opts = {}) => {
      const client = mqtt.connect({
        host: '127.0.0.1',
        port,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...opts,
      })
      clients.push(client)
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve())
        client.once('error', reject)
        client.once('close', () => reject(new Error('closed before CONNACK')))
      })
      client.removeAllListeners('error')
      client.on('error', () => {})
      return client
    },
    raw: async () => {
      const r = await RawClient.connect(port)
      raws.push(r)
      return r
    },
    close: async () => {
      for (const c of clients) c.end(true)
      for (const r of raws) r.socket.destroy()
      await broker.close()
    },
  }
}

/** A raw TCP client for byte-level tests: collects everything the broker sends. */
export class RawClient {
  received = Buffer.alloc(0)
  closed = false
  private waiters: Array<() => void> = []

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk])
      this.wake()
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    socket.on('error', () => {})
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  write(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** Waits until `predicate` holds, or fails after `ms`. */
  async until(predicate: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Waits for the broker to close the connection. */
  waitClosed(ms = 3000): Promise<void> {
    return this.until(() => this.closed, ms, 'the broker to close the connection')
  }

  /** Waits for at least `n` bytes. */
  waitBytes(n: number, ms = 3000): Promise<void> {
    return this.until(() => this.received.length >= n, ms, `${n} bytes`)
  }
}

/** Waits for one event of `emitter`, with a timeout. */
export function once<T extends unknown[]>(
  emitter: { once(event: string, f: (...args: T) => void): unknown },
  event: string,
  ms = 3000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms)
    emitter.once(event, (...args: T) => {
      clearTimeout(t)
      resolve(args)
    })
  })
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * For tests that need an outside program: the reason to skip when it is missing, or undefined
 * when it is there. Under CI=true a missing program is an error, so CI cannot pass by skipping.
 */
export function skipWithout(program: string): string | undefined {
  const found = (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      accessSync(`${dir}/${program}`, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  if (found) return undefined
  if (process.env.CI === 'true') throw new Error(`${program} is required under CI=true but is not installed (see .ci/run)`)
  return `${program} is not installed`
}
