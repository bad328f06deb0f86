// One broker under test, alone in its own process so that its CPU and memory can be read
// without the load generator's mixed in.
//
//   node --expose-gc --import tsx bench/broker-process.ts <culex|aedes|mosquitto>
//   node --import tsx bench/broker-process.ts aedes-redis redis://127.0.0.1:PORT   (bench/durable.ts)
//
// Started by bench/run.ts over fork() (IPC). Listens on an ephemeral port on 127.0.0.1, prints
// `PORT <n>` on stdout and sends `{ type: 'ready', port, pid }`. Answers `stats` (cumulative
// CPU time, RSS, heap) and `close`; exits on SIGTERM/SIGINT or when the parent goes away.
// For mosquitto this process is only a wrapper: it spawns `mosquitto` and reads that
// process's CPU and RSS from /proc, so every broker is driven through the same interface.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { notify, serveIpc } from './ipc.js'
import { withTimeout } from './mqtt-wire.js'
import { procCpuUs, procRss } from './proc.js'

export type BrokerKind = 'culex' | 'aedes' | 'aedes-redis' | 'mosquitto'

export interface BrokerStats {
  /** performance.now() in this process, ms: CPU% is taken over this process's own clock. */
  t: number
  /** Cumulative user+system CPU time of the broker process, microseconds. */
  cpuUs: number
  rss: number
  /** V8 heap in use; null for a broker that is not a Node process. */
  heapUsed: number | null
}

interface RunningBroker {
  port: number
  pid: number
  stats(gc: boolean): BrokerStats
  close(): Promise<void>
}

const HOST = '127.0.0.1'

function nodeStats(gc: boolean): BrokerStats {
  // A collection first makes heapUsed mean "retained", not "retained plus garbage".
  if (gc && typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
  const cpu = process.cpuUsage()
  const mem = process.memoryUsage()
  return { t: performance.now(), cpuUs: cpu.user + cpu.system, rss: mem.rss, heapUsed: mem.heapUsed }
}

function listenServer(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const addr = server.address()
      if (addr === null || typeof addr === 'string') return reject(new Error('no TCP address'))
      resolve(addr.port)
    })
  })
}

async function startCulex(): Promise<RunningBroker> {
  // Imported lazily so that the other brokers' processes never load (or depend on) Culex.
  const { Broker, tcp } = await import('culex-mqtt')
  const broker = new Broker()
  const listener = await broker.listen(tcp({ port: 0, host: HOST }))
  const addr = listener.address()
  if (addr === null || typeof addr === 'string') throw new Error('culex listener has no TCP address')
  return { port: addr.port, pid: process.pid, stats: nodeStats, close: () => broker.close() }
}

/** Aedes as it ships; with `redisUrl`, on aedes-persistence-redis (the durable scenarios). */
async function startAedes(redisUrl?: string): Promise<RunningBroker> {
  const { Aedes } = await import('aedes')
  let persistence: unknown
  if (redisUrl !== undefined) {
    const { default: aedesPersistenceRedis } = await import('aedes-persistence-redis')
    const url = new URL(redisUrl)
    persistence = aedesPersistenceRedis({ host: url.hostname, port: Number(url.port || 6379), family: 4 })
  }
  const aedes = await Aedes.createBroker(persistence === undefined ? {} : { persistence })
  const server = net.createServer(aedes.handle)
  const port = await listenServer(server)
  return {
    port,
    pid: process.pid,
    stats: nodeStats,
    close: async () => {
      server.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
}

function freePort(): Promise<number> {
  const probe = net.createServer()
  return listenServer(probe).then((port) => new Promise((resolve) => probe.close(() => resolve(port))))
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited with code ${child.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: HOST })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`mosquitto did not accept connections on ${port} within ${timeoutMs} ms`)
}

function procStats(pid: number): BrokerStats {
  const cpuUs = procCpuUs(pid)
  const rss = procRss(pid)
  if (cpuUs === null || rss === null) throw new Error(`cannot read /proc/${pid} (mosquitto needs Linux /proc for its stats)`)
  return { t: performance.now(), cpuUs, rss, heapUsed: null }
}

async function startMosquitto(binary: string): Promise<RunningBroker> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-bench-mosquitto-'))
  const conf = path.join(dir, 'mosquitto.conf')
  // Stock limits on purpose (queues, inflight): the comparison is against an out-of-the-box broker.
  writeFileSync(conf, [
    `listener ${port} ${HOST}`,
    'allow_anonymous true',
    'persistence false',
    'max_connections -1',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n'))
  const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
  const cleanup = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  try {
    await waitForPort(port, child, 5000)
  } catch (err) {
    cleanup()
    throw err
  }
  // Read once at start-up; removing it now leaves nothing behind even if this wrapper is killed.
  rmSync(dir, { recursive: true, force: true })
  const pid = child.pid
  if (pid === undefined) throw new Error('mosquitto has no pid')
  return {
    port,
    pid,
    stats: () => procStats(pid),
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      await withTimeout(exited, 2000, 'mosquitto exit').catch(() => child.kill('SIGKILL'))
      cleanup()
    },
  }
}

async function main(): Promise<void> {
  const kind = process.argv[2] as BrokerKind | undefined
  let broker: RunningBroker
  if (kind === 'culex') broker = await startCulex()
  else if (kind === 'aedes') broker = await startAedes()
  else if (kind === 'aedes-redis') broker = await startAedes(process.argv[3] ?? 'redis://127.0.0.1:6379')
  else if (kind === 'mosquitto') broker = await startMosquitto(process.argv[3] ?? 'mosquitto')
  else throw new Error(`usage: broker-process.ts <culex|aedes|aedes-redis|mosquitto> [mosquitto binary | redis URL], got ${kind}`)

  let closing = false
  const shutdown = async (): Promise<void> => {
    if (closing) return
    closing = true
    // A broker that cannot close in time is not what this process is measuring; just go.
    setTimeout(() => process.exit(0), 3000).unref()
    await broker.close().catch(() => {})
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown())
  process.on('SIGINT', () => void shutdown())

  serveIpc({
    stats: (args) => broker.stats((args as { gc?: boolean } | undefined)?.gc === true),
    close: () => { setImmediate(() => void shutdown()); return null },
  }, () => void shutdown())

  process.stdout.write(`PORT ${broker.port}\n`)
  notify({ type: 'ready', port: broker.port, pid: broker.pid })
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.stack ?? err.message : String(err)
  notify({ type: 'failed', message })
  process.stderr.write(`broker-process: ${message}\n`)
  // Let the IPC message flush before going.
  setTimeout(() => process.exit(1), 100)
})
