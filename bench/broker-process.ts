// One broker under test, alone in its own process so that its CPU and memory can be read
// without the load generator's mixed in.
//
//   node --expose-gc --import tsx bench/broker-process.ts <culex|aedes|mosquitto|flashmq> [binary]
//   node --import tsx bench/broker-process.ts aedes-redis redis://127.0.0.1:PORT   (bench/durable.ts)
//
// Started by bench/run.ts over fork() (IPC). Listens on an ephemeral port on 127.0.0.1, prints
// `PORT <n>` on stdout and sends `{ type: 'ready', port, pid }`. Answers `stats` (cumulative
// CPU time, RSS, heap) and `close`; exits on SIGTERM/SIGINT or when the parent goes away.
// For mosquitto and flashmq this process is only a wrapper: it spawns the native broker and reads
// that process's CPU and RSS from /proc, so every broker is driven through the same interface.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { notify, serveIpc } from './ipc.js'
import { withTimeout } from './mqtt-wire.js'
import { procCpuUs, procRss } from './proc.js'

export type BrokerKind = 'culex' | 'aedes' | 'aedes-redis' | 'mosquitto' | 'flashmq'

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

async function waitForPort(name: string, port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited with ${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode}`)
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: HOST })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${name} did not accept connections on ${port} within ${timeoutMs} ms`)
}

function procStats(name: string, pid: number): BrokerStats {
  const cpuUs = procCpuUs(pid)
  const rss = procRss(pid)
  if (cpuUs === null || rss === null) throw new Error(`cannot read /proc/${pid} (${name} needs Linux /proc for its stats)`)
  return { t: performance.now(), cpuUs, rss, heapUsed: null }
}

/**
 * A native broker in a child process: writes its config (for the given port) to a temporary
 * directory, starts `binary -c <conf>`, waits until it accepts connections and reads its CPU and
 * RSS from /proc. Its stderr goes to this process's stderr, and so do the lines of its stdout
 * (FlashMQ logs there) that `keepLine` keeps.
 */
async function startNative(
  name: string, binary: string, config: (port: number) => string[], keepLine: (line: string) => boolean = () => true,
): Promise<RunningBroker> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), `culex-bench-${name}-`))
  const conf = path.join(dir, `${name}.conf`)
  writeFileSync(conf, [...config(port), ''].join('\n'))
  const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'pipe', 'inherit'] })
  let partial = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) if (keepLine(line)) process.stderr.write(`${line}\n`)
  })
  const cleanup = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  try {
    await waitForPort(name, port, child, 5000)
  } catch (err) {
    cleanup()
    throw err
  }
  // Read once at start-up; removing it now leaves nothing behind even if this wrapper is killed.
  rmSync(dir, { recursive: true, force: true })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name} has no pid`)
  return {
    port,
    pid,
    stats: () => procStats(name, pid),
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      await withTimeout(exited, 2000, `${name} exit`).catch(() => child.kill('SIGKILL'))
      cleanup()
    },
  }
}

function startMosquitto(binary: string): Promise<RunningBroker> {
  // Stock limits on purpose (queues, inflight): the comparison is against an out-of-the-box broker.
  return startNative('mosquitto', binary, (port) => [
    `listener ${port} ${HOST}`,
    'allow_anonymous true',
    'persistence false',
    'max_connections -1',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
  ])
}

/**
 * FlashMQ with one worker thread (the comparison is per core) and QoS queues deep enough that
 * the bench's windows never make it drop (its defaults are 512 messages / 64 KiB per client);
 * everything else as shipped, e.g. client_max_write_buffer_size 1 MiB. No storage_dir: no
 * persistence, like the other brokers here.
 */
function startFlashmq(binary: string): Promise<RunningBroker> {
  // FlashMQ raises its open-files limit to 1,000,000 by default and logs an error when it may
  // not; ask for what this process may have (plenty for the bench's 2,000 idle clients).
  let hardNofile: string | undefined
  try {
    hardNofile = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]
  } catch { /* no /proc: leave FlashMQ's default */ }
  return startNative('flashmq', binary, (port) => [
    'thread_count 1',
    ...(hardNofile ? [`rlimit_nofile ${hardNofile}`] : []),
    'allow_anonymous true',
    'max_qos_msg_pending_per_client 65535',
    'max_qos_bytes_pending_per_client 67108864',
    'log_level warning',
    'listen {',
    '  protocol mqtt',
    '  inet_protocol ip4',
    `  inet4_bind_address ${HOST}`,
    `  port ${port}`,
    '}',
  // log_level applies once the config is read: drop the INFO/NOTICE lines printed before that.
  ], (line) => !/\] \[(INFO|NOTICE)\] /.test(line))
}

async function main(): Promise<void> {
  const kind = process.argv[2] as BrokerKind | undefined
  let broker: RunningBroker
  if (kind === 'culex') broker = await startCulex()
  else if (kind === 'aedes') broker = await startAedes()
  else if (kind === 'aedes-redis') broker = await startAedes(process.argv[3] ?? 'redis://127.0.0.1:6379')
  else if (kind === 'mosquitto') broker = await startMosquitto(process.argv[3] ?? 'mosquitto')
  else if (kind === 'flashmq') broker = await startFlashmq(process.argv[3] ?? 'flashmq')
  else throw new Error(`usage: broker-process.ts <culex|aedes|aedes-redis|mosquitto|flashmq> [mosquitto/flashmq binary | redis URL], got ${kind}`)

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
