// The brokers of the durable scenarios (bench/durable.ts), each in its own process, each on a
// fresh store in a temporary directory:
//
//   culex-sqlite   the CLI: `node --import tsx src/cli/main.ts --persistence sqlite:<tmp>/culex.db`
//                  (durability 'process': synchronous=NORMAL in WAL mode, no fsync per commit)
//   culex-redis    the CLI with `--persistence redis://…`, on a redis-server of its own
//                  (appendonly yes, appendfsync always: bench/redis-server.ts)
//   aedes-redis    Aedes on aedes-persistence-redis (bench/broker-process.ts aedes-redis), on a
//                  redis-server of its own configured the same way
//   mosquitto      `persistence true` in a temporary persistence_location, autosave_interval left
//                  at its default (1800 s): Mosquitto acknowledges from memory and writes its
//                  database on autosave and at shutdown
//
// Culex is started through its CLI, not bench/broker-process.ts, so that what is measured is the
// shipped `culex --persistence …` and its start-up ("culex: listening on") can be timed.
// Every broker is given room for 200,000 queued messages per session (Culex --max-queued,
// Mosquitto max_queued_messages; Aedes has no such limit).

import { fork, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { IpcClient } from './ipc.js'
import { withTimeout } from './mqtt-wire.js'
import { benchTempDir, removeBenchTempDir, startBenchRedis, type BenchRedis } from './redis-server.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const HOST = '127.0.0.1'
export const MAX_QUEUED = 200_000

export const DURABLE_BROKERS = ['culex-sqlite', 'culex-redis', 'aedes-redis', 'mosquitto'] as const
export type DurableBrokerName = (typeof DURABLE_BROKERS)[number]

export const LABELS: Record<DurableBrokerName, string> = {
  'culex-sqlite': 'Culex+SQLite',
  'culex-redis': 'Culex+Redis',
  'aedes-redis': 'Aedes+Redis',
  mosquitto: 'Mosquitto',
}

/** How long a (re)start took, ms from spawn. */
export interface StartTiming {
  /** Process spawned → accepting MQTT connections ("culex: listening on" for Culex). */
  spawnToListeningMs: number
  /** Culex only: "culex: persistence …" (printed right after `new Broker`) → "listening": opening and restoring the store. */
  brokerToListeningMs: number | null
}

export interface DurableBroker {
  name: DurableBrokerName
  port: number
  /** The broker process (for CPU, RSS and I/O from /proc). */
  pid: number
  /** The redis-server behind it, if any. */
  redis: BenchRedis | null
  timing: StartTiming
  alive(): boolean
  /** Bytes of the store's files: SQLite db + wal, Redis AOF directory, mosquitto.db. */
  storeBytes(): number
  /** Graceful stop (SIGTERM / IPC close) and a new process on the same store; returns its timing and how long the stop took. */
  restart(): Promise<StartTiming & { stopMs: number }>
  /** Stops the broker (and its redis-server) and removes the store. */
  dispose(): Promise<void>
}

export interface LaunchOptions {
  mosquittoPath: string | null
  /** Where Culex processes write a V8 CPU profile (node --cpu-prof), or null. */
  cpuProfDir: string | null
  /** Every child process is reported here, so the orchestrator can kill them all on exit. */
  track: (c: ChildProcess) => void
}

function fileSize(f: string): number {
  try {
    return statSync(f).size
  } catch {
    return 0
  }
}

async function waitForPort(port: number, alive: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the broker exited during start-up')
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: HOST })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`nothing accepted connections on ${port} within ${timeoutMs} ms`)
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, HOST, () => {
      const addr = probe.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      probe.close(() => resolve(port))
    })
  })
}

async function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  await withTimeout(exited, timeoutMs, 'broker exit').catch(async () => {
    process.stderr.write(`  (pid ${child.pid} did not exit within ${timeoutMs} ms of SIGTERM; killed)\n`)
    child.kill('SIGKILL')
    await exited
  })
}

// ---------------------------------------------------------------- Culex (CLI)

interface CulexProcess { child: ChildProcess; port: number; timing: StartTiming }

async function spawnCulex(persistence: string, opts: LaunchOptions): Promise<CulexProcess> {
  const execArgv = ['--import', 'tsx']
  if (opts.cpuProfDir) execArgv.push('--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir)
  const args = [...execArgv, path.join(root, 'src', 'cli', 'main.ts'),
    '--port', '0', '--host', HOST, '--persistence', persistence, '--max-queued', String(MAX_QUEUED)]
  const t0 = performance.now()
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  opts.track(child)
  let tBroker: number | null = null
  let out = ''
  let err = ''
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4096)
    process.stderr.write(d.toString().replace(/^(?=.)/gm, '  [culex] '))
  })
  const listening = new Promise<{ port: number; t: number }>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      const t = performance.now()
      out += d.toString()
      if (tBroker === null && /culex: persistence /.test(out)) tBroker = t
      const m = /culex: listening on mqtt:\/\/[^:]+:(\d+)/.exec(out)
      if (m) resolve({ port: Number(m[1]), t })
    })
    child.once('exit', (code, signal) => reject(new Error(`culex exited (code ${code}, signal ${signal}) before listening: ${err.trim().split('\n').slice(-2).join(' | ')}`)))
  })
  try {
    const { port, t } = await withTimeout(listening, 120_000, 'culex listening')
    return { child, port, timing: { spawnToListeningMs: t - t0, brokerToListeningMs: tBroker === null ? null : t - tBroker } }
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
}

async function launchCulex(name: 'culex-sqlite' | 'culex-redis', opts: LaunchOptions): Promise<DurableBroker> {
  let redis: BenchRedis | null = null
  let dir: string | null = null
  let persistence: string
  let storeBytes: () => number
  if (name === 'culex-sqlite') {
    dir = benchTempDir('culex-bench-sqlite-')
    const db = path.join(dir, 'culex.db')
    persistence = `sqlite:${db}`
    storeBytes = () => fileSize(db) + fileSize(`${db}-wal`)
  } else {
    redis = await startBenchRedis(opts.track)
    persistence = redis.url
    const r = redis
    storeBytes = () => r.aofBytes()
  }
  let proc: CulexProcess
  try {
    proc = await spawnCulex(persistence, opts)
  } catch (e) {
    await redis?.stop()
    if (dir) removeBenchTempDir(dir)
    throw e
  }
  const b: DurableBroker = {
    name,
    port: proc.port,
    pid: proc.child.pid as number,
    redis,
    timing: proc.timing,
    alive: () => proc.child.exitCode === null && proc.child.signalCode === null,
    storeBytes,
    restart: async () => {
      const t = performance.now()
      await stopChild(proc.child, 60_000)
      const stopMs = performance.now() - t
      proc = await spawnCulex(persistence, opts)
      b.port = proc.port
      b.pid = proc.child.pid as number
      b.timing = proc.timing
      return { ...proc.timing, stopMs }
    },
    dispose: async () => {
      await stopChild(proc.child, 30_000)
      await redis?.stop()
      if (dir) removeBenchTempDir(dir)
    },
  }
  return b
}

// ---------------------------------------------------------------- Aedes on aedes-persistence-redis

async function launchAedes(opts: LaunchOptions): Promise<DurableBroker> {
  const redis = await startBenchRedis(opts.track)
  const start = async (): Promise<{ ipc: IpcClient; port: number; timing: StartTiming }> => {
    const t0 = performance.now()
    const child = fork(path.join(here, 'broker-process.ts'), ['aedes-redis', redis.url], {
      cwd: root, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    opts.track(child)
    const ipc = new IpcClient(child, 'aedes-redis broker')
    const n = await ipc.notice(['ready', 'failed'], 60_000)
    if (n.type === 'failed') {
      child.kill('SIGKILL')
      throw new Error(String(n.message).split('\n')[0])
    }
    return { ipc, port: Number(n.port), timing: { spawnToListeningMs: performance.now() - t0, brokerToListeningMs: null } }
  }
  const close = async (ipc: IpcClient): Promise<void> => {
    const child = ipc.child
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    await ipc.request('close', null, 2000).catch(() => child.kill('SIGTERM'))
    await withTimeout(exited, 10_000, 'aedes exit').catch(async () => { child.kill('SIGKILL'); await exited })
  }
  let cur: Awaited<ReturnType<typeof start>>
  try {
    cur = await start()
  } catch (e) {
    await redis.stop()
    throw e
  }
  const b: DurableBroker = {
    name: 'aedes-redis',
    port: cur.port,
    pid: cur.ipc.child.pid as number,
    redis,
    timing: cur.timing,
    alive: () => cur.ipc.alive,
    storeBytes: () => redis.aofBytes(),
    restart: async () => {
      const t = performance.now()
      await close(cur.ipc)
      const stopMs = performance.now() - t
      cur = await start()
      b.port = cur.port
      b.pid = cur.ipc.child.pid as number
      b.timing = cur.timing
      return { ...cur.timing, stopMs }
    },
    dispose: async () => {
      await close(cur.ipc)
      await redis.stop()
    },
  }
  return b
}

// ---------------------------------------------------------------- Mosquitto with persistence

async function launchMosquitto(opts: LaunchOptions): Promise<DurableBroker> {
  const binary = opts.mosquittoPath
  if (!binary) throw new Error('mosquitto not found')
  const dir = benchTempDir('culex-bench-mosquitto-')
  // Started as root, Mosquitto drops to the `mosquitto` user and then must still be able to write
  // its database here.
  chmodSync(dir, 0o777)
  const port = await freePort()
  const conf = path.join(dir, 'mosquitto.conf')
  writeFileSync(conf, [
    `listener ${port} ${HOST}`,
    'allow_anonymous true',
    'max_connections -1',
    'persistence true',
    `persistence_location ${dir}/`,
    // autosave_interval: the default (1800 s).
    `max_queued_messages ${MAX_QUEUED}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n'))
  const start = async (): Promise<{ child: ChildProcess; timing: StartTiming }> => {
    const t0 = performance.now()
    const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
    opts.track(child)
    try {
      await waitForPort(port, () => child.exitCode === null, 120_000)
    } catch (e) {
      child.kill('SIGKILL')
      throw e
    }
    return { child, timing: { spawnToListeningMs: performance.now() - t0, brokerToListeningMs: null } }
  }
  let cur: Awaited<ReturnType<typeof start>>
  try {
    cur = await start()
  } catch (e) {
    removeBenchTempDir(dir)
    throw e
  }
  const db = path.join(dir, 'mosquitto.db')
  const b: DurableBroker = {
    name: 'mosquitto',
    port,
    pid: cur.child.pid as number,
    redis: null,
    timing: cur.timing,
    alive: () => cur.child.exitCode === null && cur.child.signalCode === null,
    storeBytes: () => fileSize(db),
    restart: async () => {
      const t = performance.now()
      await stopChild(cur.child, 60_000)
      const stopMs = performance.now() - t
      if (!existsSync(db)) process.stderr.write('  (mosquitto wrote no mosquitto.db at shutdown)\n')
      cur = await start()
      b.pid = cur.child.pid as number
      b.timing = cur.timing
      return { ...cur.timing, stopMs }
    },
    dispose: async () => {
      await stopChild(cur.child, 30_000)
      removeBenchTempDir(dir)
    },
  }
  return b
}

export function launchDurable(name: DurableBrokerName, opts: LaunchOptions): Promise<DurableBroker> {
  switch (name) {
    case 'culex-sqlite':
    case 'culex-redis':
      return launchCulex(name, opts)
    case 'aedes-redis':
      return launchAedes(opts)
    case 'mosquitto':
      return launchMosquitto(opts)
  }
}
