/**
 * A `redis-server` of the test's own: on a free loopback port, in a fresh temporary directory,
 * configured as a durable store (`appendonly yes`, `appendfsync always`,
 * `no-appendfsync-on-rewrite no`, no RDB snapshots), so tests never touch a Redis the machine
 * may be running and can stop, kill and restart theirs.
 *
 * Tests that need it skip with `skipRedis` when the program is missing (and fail under CI=true,
 * as `skipWithout` does):
 *
 * ```ts
 * describe('RedisPersistence', { skip: skipRedis() }, () => { ... })
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { skipWithout } from './programs.js'

/** The reason to skip Redis tests, or undefined when `redis-server` is installed (throws under CI=true when it is not). */
export function skipRedis(): string | undefined {
  return skipWithout('redis-server')
}

/** Options of {@link startRedis}. */
export interface StartRedisOptions {
  /**
   * Extra configuration, as `redis-server` command-line pairs, after the defaults so they win:
   * `['--appendfsync', 'everysec']`, `['--rename-command', 'CONFIG', '']`.
   */
  args?: string[]
  /** Milliseconds to wait for the server to accept PING. Default 10,000. */
  readyTimeoutMs?: number
}

/** A running test `redis-server`. */
export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Its data directory (the AOF lives in `appendonlydir/` under it). */
  readonly dir: string
  /** The running process's id, or undefined while it is stopped. */
  readonly pid: number | undefined
  /** Stops it with SIGTERM (Redis fsyncs and exits cleanly); resolves once the process is gone. */
  stop(): Promise<void>
  /** Kills it with SIGKILL, as a crash would; resolves once the process is gone. */
  kill(): Promise<void>
  /** Starts it again on the same port and directory (stopping it first if it runs); resolves once it accepts PING. */
  restart(): Promise<void>
  /** Stops it and deletes its directory. */
  dispose(): Promise<void>
}

/** A port the kernel reports free right now (listen on 0, close). Another process may take it; `startRedis` retries then. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Resolves once `redis-server` answers PING on the port. */
function ping(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    socket.setEncoding('latin1')
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk: string) => {
      reply += chunk
      if (!reply.includes('\r\n')) return
      socket.destroy()
      if (reply.startsWith('+PONG')) resolve()
      else reject(new Error(`redis-server answered PING with ${JSON.stringify(reply)}`))
    })
    socket.on('error', reject)
  })
}

/**
 * Every server still running when the test process exits is killed, and every directory not yet
 * disposed removed, so that none outlives a failed or interrupted run.
 */
const running = new Set<ChildProcess>()
const directories = new Set<string>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
  for (const dir of directories) rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
})

class Launch {
  readonly exited: Promise<number | null>
  log = ''

  constructor(readonly child: ChildProcess) {
    running.add(child)
    this.exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        running.delete(child)
        resolve(code)
      })
    })
    const keep = (chunk: Buffer): void => {
      // The last few kilobytes, for the error message when it fails to start.
      this.log = (this.log + chunk.toString()).slice(-8192)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
  }

  /** Resolves once the log says it is ready and it answers PING; rejects if it exits or the deadline passes first. */
  ready(port: number, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`redis-server did not become ready within ${timeoutMs} ms`)), timeoutMs)
      const onData = (): void => {
        if (!/ready to accept connections/i.test(this.log)) return
        this.child.stdout?.off('data', onData)
        ping(port).then(() => {
          clearTimeout(timer)
          resolve()
        }, fail)
      }
      const fail = (error: Error): void => {
        clearTimeout(timer)
        this.child.stdout?.off('data', onData)
        reject(new Error(`${error.message}\n--- redis-server log ---\n${this.log}`))
      }
      this.child.stdout?.on('data', onData)
      onData()
      void this.exited.then((code) => fail(new Error(`redis-server exited with code ${code} before it was ready`)))
    })
  }
}

/**
 * Starts a `redis-server` for one test (see the module comment for its configuration). Call
 * `dispose()` when done; a server still running when the process exits is killed anyway.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'culex-redis-'))
  directories.add(dir)
  const timeoutMs = options.readyTimeoutMs ?? 10_000
  let port = 0
  let current: Launch | undefined

  const launch = async (): Promise<void> => {
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--daemonize', 'no',
      '--logfile', '',
      '--appendonly', 'yes',
      '--appendfsync', 'always',
      '--no-appendfsync-on-rewrite', 'no',
      '--save', '',
      ...(options.args ?? []),
    ]
    const started = new Launch(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }))
    current = started
    try {
      await started.ready(port, timeoutMs)
    } catch (error) {
      started.child.kill('SIGKILL')
      await started.exited
      current = undefined
      throw error
    }
  }

  const end = async (signal: NodeJS.Signals): Promise<void> => {
    const launched = current
    if (launched === undefined) return
    current = undefined
    if (launched.child.exitCode === null && launched.child.signalCode === null) launched.child.kill(signal)
    await launched.exited
  }

  // The free port may be taken between our check and Redis's bind: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    try {
      await launch()
      break
    } catch (error) {
      if (attempt >= 5 || !/address already in use/i.test(String(error))) {
        await rm(dir, { recursive: true, force: true })
        directories.delete(dir)
        throw error
      }
    }
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get pid() {
      return current?.child.pid
    },
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    restart: async () => {
      await end('SIGTERM')
      await launch()
    },
    dispose: async () => {
      await end('SIGTERM')
      await rm(dir, { recursive: true, force: true })
      directories.delete(dir)
    },
  }
}
