// A redis-server of the bench's own for the durable scenarios (bench/durable.ts): a free port on
// 127.0.0.1, a fresh temporary directory, and the configuration of a durable store (the same as
// test/helpers/redis-server.ts): `appendonly yes`, `appendfsync always`, no RDB snapshots. Every
// write a client sees acknowledged has been fsynced to the AOF first.

import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { withTimeout } from './mqtt-wire.js'

/** Directories of the bench's stores still on disk, removed by the orchestrator when it exits, however it exits. */
export const benchTempDirs = new Set<string>()

/** A fresh temporary directory, registered in benchTempDirs. */
export function benchTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  benchTempDirs.add(dir)
  return dir
}

/** Removes a directory made by benchTempDir. */
export function removeBenchTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  benchTempDirs.delete(dir)
}

export interface BenchRedis {
  port: number
  url: string
  pid: number
  dir: string
  /** Bytes in the AOF directory (base + incremental files). */
  aofBytes(): number
  /** How many AOF base files it has written so far (a rewrite makes a new one). */
  aofGeneration(): number
  stop(): Promise<void>
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const addr = probe.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      probe.close(() => resolve(port))
    })
  })
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    let reply = ''
    s.setEncoding('latin1')
    s.once('connect', () => s.write('PING\r\n'))
    s.on('data', (d: string) => {
      reply += d
      if (reply.includes('\r\n')) { s.destroy(); resolve(reply.startsWith('+PONG')) }
    })
    s.once('error', () => resolve(false))
  })
}

function dirBytes(dir: string): number {
  let n = 0
  try {
    for (const f of readdirSync(dir)) n += statSync(path.join(dir, f)).size
  } catch { /* not created yet */ }
  return n
}

/** Starts one; the caller stops it. `track` receives the child so an orchestrator can kill it on exit. */
export async function startBenchRedis(track: (c: ChildProcess) => void): Promise<BenchRedis> {
  const dir = benchTempDir('culex-bench-redis-')
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--logfile', '',
      '--appendonly', 'yes', '--appendfsync', 'always', '--no-appendfsync-on-rewrite', 'no', '--save', '',
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    track(child)
    let log = ''
    const keep = (d: Buffer): void => { log = (log + d.toString()).slice(-4096) }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const deadline = Date.now() + 10_000
    let ok = false
    while (Date.now() < deadline && child.exitCode === null) {
      if (/ready to accept connections/i.test(log) && await ping(port)) { ok = true; break }
      await new Promise((r) => setTimeout(r, 50))
    }
    if (!ok) {
      child.kill('SIGKILL')
      await exited
      if (attempt < 5 && /address already in use/i.test(log)) continue
      removeBenchTempDir(dir)
      throw new Error(`redis-server did not start: ${log.trim().split('\n').slice(-3).join(' | ')}`)
    }
    const pid = child.pid as number
    const aofDir = path.join(dir, 'appendonlydir')
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      pid,
      dir,
      aofBytes: () => dirBytes(aofDir),
      aofGeneration: () => {
        try {
          return readdirSync(aofDir).filter((f) => f.includes('.base.')).map((f) => Number(/\.(\d+)\.base\./.exec(f)?.[1] ?? 0)).reduce((a, b) => Math.max(a, b), 0)
        } catch {
          return 0
        }
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        await withTimeout(exited, 10_000, 'redis-server exit').catch(async () => {
          child.kill('SIGKILL')
          await exited
        })
        removeBenchTempDir(dir)
      },
    }
  }
}

/** Whether `redis-server` is on the PATH (the Redis scenarios are skipped, with a note, when not). */
export function hasRedisServer(): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, 'redis-server'), constants.X_OK)
      return true
    } catch { /* keep looking */ }
  }
  return false
}
