// Culex benchmark: the same scenarios against Culex, Aedes and (when installed) Mosquitto and FlashMQ.
//
//   npm run bench                          full run: 3 repetitions × 3 s windows, ~5 minutes
//   npm run bench -- --quick               smoke test: 1 repetition × 1 s windows
//   npm run bench -- --only culex,aedes    choose brokers
//   npm run bench -- --scenarios fanin,latency
//   npm run bench -- --scenarios all       also the opt-in heavy ones (idle100k, subs1m, floods)
//   npm run bench -- --scale 0.1           shrink the heavy scenarios' counts, to check them quickly
//   npm run bench -- --json results.json   also write every repetition as JSON
//   npm run bench -- --durable             the durable-persistence scenarios instead (bench/durable.ts)
//   npm run bench -- --cluster             the cluster scenarios instead (bench/cluster.ts)
//
// Reading the output: see bench/README.md. In short, each number is the median over the
// repetitions; the ratio columns are Culex divided by the other broker, so above 1 is better
// for rates and below 1 is better for latency and memory; the CPU table tells whether the
// broker (good: that is what we measure) or the load generator (bad: marked `!`) was the
// saturated side.

import { fork, type ChildProcess } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import type { BrokerStats } from './broker-process.js'
import type { Dial } from './dial.js'
import { IpcClient } from './ipc.js'
import type { Mark, StartArgs } from './load-types.js'
import {
  buildFlashmq, findMosquitto, locateFlashmq, machineBusyUs, openFilesLimit, procCpuUs, serverConnections,
} from './proc.js'
import { TimeoutError } from './mqtt-wire.js'
import { makeCert, type BenchCert } from './tls-cert.js'
import { checkWire } from './wire-check.js'
import { buildConnectChurn } from './connect-churn.js'
import {
  BROKERS, cpuTable, formatNumber, resultsTable, rotate, scenarios, summarize,
  type BrokerName, type Cell, type RepResult, type Results, type ScenarioDef,
} from './report.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const PAYLOAD_BYTES = 64
/** Open files a process needs besides its connections (modules, pipes, listeners). */
const FD_MARGIN = 200
/** Where Culex, Aedes and FlashMQ serve MQTT over WebSocket (bench/broker-process.ts WS_PATH). */
const WS_PATH = '/mqtt'

// ---------------------------------------------------------------- options

// The durable-persistence and the cluster scenarios have brokers, loads and tables of their own.
if (process.argv.slice(2).includes('--durable') || process.argv.slice(2).includes('--cluster')) {
  const argv = process.argv.slice(2)
  const run = argv.includes('--cluster')
    ? (await import('./cluster.js')).runCluster
    : (await import('./durable.js')).runDurable
  const code = await run(argv).catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  })
  process.exit(code)
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    scenarios: { type: 'string' },
    json: { type: 'string' },
    reps: { type: 'string' },
    duration: { type: 'string' },
    scale: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: false,
})

if (flags.help) {
  process.stdout.write(`usage: npm run bench -- [--quick] [--only culex,aedes,mosquitto,flashmq] [--scenarios ids|all]
                        [--reps N] [--duration MS] [--scale F] [--json FILE]
       npm run bench -- --durable --help     the durable-persistence scenarios
       npm run bench -- --cluster --help     the cluster scenarios
scenarios: ${scenarios().filter((s) => !s.optIn).map((s) => s.id).join(', ')}
opt-in (only when named, or with --scenarios all): ${scenarios().filter((s) => s.optIn).map((s) => s.id).join(', ')}
--scale F (0 < F <= 1) shrinks the heavy scenarios' counts (10k+ clients, 100k retained, 1M subscriptions)
`)
  process.exit(0)
}

function positiveInt(v: string | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${v}`)
  return n
}

const reps = positiveInt(flags.reps, flags.quick ? 1 : 3, 'reps')
const durationMs = Math.min(positiveInt(flags.duration, flags.quick ? 1000 : 3000, 'duration'), 30_000)
const warmupMs = flags.quick ? 500 : 1000
const SETTLE_MS = 300
const BUSY_WARN_PCT = 25

const wanted: BrokerName[] = flags.only
  ? flags.only.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    if (!(BROKERS as readonly string[]).includes(s)) throw new Error(`unknown broker '${s}' (have: ${BROKERS.join(', ')})`)
    return s as BrokerName
  })
  : [...BROKERS]

const scale = flags.scale === undefined ? 1 : Number(flags.scale)
if (!(scale > 0 && scale <= 1)) throw new Error(`--scale must be in (0, 1], got ${flags.scale}`)
const allDefs = scenarios(scale)
// The opt-in scenarios (hundreds of thousands of connections or subscriptions) only when named.
const defs: ScenarioDef[] = flags.scenarios === undefined
  ? allDefs.filter((d) => !d.optIn)
  : flags.scenarios.trim() === 'all'
    ? allDefs
    : flags.scenarios.split(',').map((id) => {
      const d = allDefs.find((s) => s.id === id.trim())
      if (!d) throw new Error(`unknown scenario '${id}' (have: ${allDefs.map((s) => s.id).join(', ')}, or all)`)
      return d
    })

/**
 * Whatever happens, the whole run ends by then: a budget per selected scenario (plain ones
 * take about a minute with 3 repetitions, those with 10k clients or two phases a few, the
 * opt-in ones far more), for the repetitions asked for.
 */
const RUN_DEADLINE_MS = (5 + Math.max(1, reps / 3) *
  defs.reduce((m, d) => m + (d.optIn ? 20 : d.connections !== undefined || d.kind === 'oneshot' ? 4 : 1.5), 0)) * 60_000

// ---------------------------------------------------------------- child processes

const children = new Set<ChildProcess>()
const extraPids = new Set<number>()

function killEverything(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const pid of extraPids) {
    try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
  }
}
process.on('exit', killEverything)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: stopping brokers and load generator\n`)
    killEverything()
    process.exit(130)
  })
}
const deadline = setTimeout(() => {
  process.stderr.write(`bench: still running after ${RUN_DEADLINE_MS / 60_000} min, giving up\n`)
  killEverything()
  process.exit(1)
}, RUN_DEADLINE_MS)
deadline.unref()

function forkChild(file: string, args: string[], extraExecArgv: string[]): ChildProcess {
  const child = fork(path.join(here, file), args, {
    cwd: root,
    // Inherit --import tsx from `npm run bench`.
    execArgv: [...process.execArgv, ...extraExecArgv],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}

async function endChild(ipc: IpcClient, graceful: string | null): Promise<void> {
  const child = ipc.child
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  if (graceful) await ipc.request(graceful, null, 2000).catch(() => {})
  else child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 4000)
  await exited
  clearTimeout(t)
}

interface BrokerHandle {
  name: BrokerName
  ipc: IpcClient
  port: number
  pid: number
  /** `afterFlood` scenarios: this process's memory at rest before its first repetition. */
  idle?: Resting
}

/** A broker that cannot run a scenario (e.g. a Mosquitto built without websockets): skipped, not an error. */
class Unsupported extends Error {}

const mosquittoPath = findMosquitto()
/** Set in main(), once found (or built); null while it is not. */
let flashmqPath: string | null = null
/** Longest a FlashMQ build by bench/run.ts may take (once: the script caches it); under RUN_DEADLINE_MS. */
const FLASHMQ_BUILD_MS = 12 * 60_000
/** The self-signed certificate of the `tls` scenario; made in main() when that scenario runs. */
let cert: BenchCert | null = null
/** The compiled bench/connect-churn.c, built in main() when `connect` runs; null: the Node workers (marked). */
let connectChurn: string | null = null
/** Marks the numbers of the Node fallback wherever they are printed. */
const NODE_GEN = '[Node generator]'

async function startBroker(name: BrokerName, def: ScenarioDef): Promise<BrokerHandle> {
  const binary = name === 'mosquitto' ? mosquittoPath : name === 'flashmq' ? flashmqPath : null
  const args = binary ? [name, binary] : [name]
  if (def.listener === 'ws') args.push('--listener', 'ws')
  if (def.listener === 'tls') {
    if (!cert) throw new Error('no certificate for the tls scenario')
    args.push('--listener', 'tls', '--tls-dir', cert.dir)
  }
  // Culex refuses connections beyond 10,000 by default; the other brokers run here without a
  // limit (Mosquitto with max_connections -1), so a scenario that holds more raises it.
  if (def.connections !== undefined) args.push('--max-connections', String(def.connections + 1000))
  // CULEX_BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the Node brokers (Culex, Aedes).
  const nodeArgs = name === 'culex' || name === 'aedes' ? (process.env.CULEX_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean) : []
  const ipc = new IpcClient(forkChild('broker-process.ts', args, ['--expose-gc', ...nodeArgs]), `${name} broker`)
  try {
    const n = await ipc.notice(['ready', 'failed', 'unsupported'], 30_000)
    if (n.type === 'unsupported') throw new Unsupported(String(n.reason))
    if (n.type === 'failed') throw new Error(String(n.message).split('\n')[0])
    const port = Number(n.port)
    const pid = Number(n.pid)
    if (pid !== ipc.child.pid) extraPids.add(pid)
    return { name, ipc, port, pid }
  } catch (err) {
    await endChild(ipc, null)
    throw err
  }
}

async function stopBroker(b: BrokerHandle): Promise<void> {
  await endChild(b.ipc, 'close')
  extraPids.delete(b.pid)
}

const brokerStats = (b: BrokerHandle, gc = false): Promise<BrokerStats> =>
  b.ipc.request('stats', { gc }, 10_000)

/** CPU of the broker from /proc; NaN (so the CPU column reads n/a) where there is no /proc. */
function brokerCpu(b: BrokerHandle): { cpuUs: number; t: number } {
  return { cpuUs: procCpuUs(b.pid) ?? NaN, t: performance.now() }
}

// ---------------------------------------------------------------- measurements

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
let tagCounter = 0
// Short: client ids must stay within the 23 bytes every MQTT 3.1.1 server has to accept.
const newTag = (): string => `b${(tagCounter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`

/** Adds how long the answer took. The result may be awaited late, so it is never left unhandled. */
function timed<T extends object>(p: Promise<T>): Promise<T & { ms: number }> {
  const t = performance.now()
  const r = p.then((v) => ({ ...v, ms: performance.now() - t }))
  r.catch(() => {})
  return r
}

/** How the generator's clients reach the brokers in this scenario. */
function dialFor(def: ScenarioDef): Dial | undefined {
  if (def.listener === 'ws') return { kind: 'ws', path: WS_PATH }
  if (def.listener === 'tls') {
    if (!cert) throw new Error('no certificate for the tls scenario')
    return { kind: 'tls', ca: cert.ca }
  }
  return undefined
}

function startArgs(def: ScenarioDef, b: BrokerHandle, spec = def.spec): StartArgs {
  const dial = dialFor(def)
  const native = spec.kind === 'connect' && connectChurn !== null ? { connectChurn } : {}
  return { port: b.port, spec, payloadBytes: PAYLOAD_BYTES, tag: newTag(), ...(dial ? { dial } : {}), ...native }
}

const MIB = 1024 * 1024

/** What holding the load's state cost the broker: RSS and heap growth, MiB (heap NaN for native brokers). */
function memoryGrowth(before: BrokerStats, after: BrokerStats): Record<string, number> {
  return {
    rssMiB: (after.rss - before.rss) / MIB,
    heapMiB: before.heapUsed === null || after.heapUsed === null ? NaN : (after.heapUsed - before.heapUsed) / MIB,
  }
}

/** The broker with no client connected, after a forced GC. */
interface Resting {
  stats: BrokerStats
  /** Connections the broker still held when it was read (0 unless it was slow to close them). */
  connectionsLeft: number
}

/** Longest the broker may take to close its side of every connection once the generator closed its own. */
const CLOSE_WAIT_MS = 5000

/**
 * The broker's memory at rest: once it holds no connection (its side of each closed, so what a
 * session held can be freed), after a forced GC, and again after a pause, since memory that
 * closing sockets lets go of (weak callbacks, finalizers) is only collectable on a later turn
 * of its event loop. RSS only, for Mosquitto and FlashMQ.
 */
async function restingStats(b: BrokerHandle): Promise<Resting> {
  const end = performance.now() + CLOSE_WAIT_MS
  let left = serverConnections(b.port) ?? 0
  while (left > 0 && performance.now() < end) {
    await sleep(50)
    left = serverConnections(b.port) ?? 0
  }
  await sleep(200)
  await brokerStats(b, true)
  await sleep(200)
  return { stats: await brokerStats(b, true), connectionsLeft: left }
}

/**
 * Whether a flood's memory came back: heap at rest after it as % of the idle heap (NaN for
 * native brokers), RSS at rest after it − idle RSS (MiB), and the levels themselves (MiB).
 */
function afterFlood(idle: Resting, after: Resting): Record<string, number> {
  const heap = (r: Resting): number => (r.stats.heapUsed === null ? NaN : r.stats.heapUsed / MIB)
  const code = (r: Resting): number => (r.stats.heapCode === null ? NaN : r.stats.heapCode / MIB)
  return {
    heapAfterFloodPct: (100 * heap(after)) / heap(idle),
    rssAfterFloodMiB: (after.stats.rss - idle.stats.rss) / MIB,
    heapIdleMiB: heap(idle),
    heapAfterMiB: heap(after),
    heapCodeIdleMiB: code(idle),
    heapCodeAfterMiB: code(after),
    rssIdleMiB: idle.stats.rss / MIB,
    rssAfterMiB: after.stats.rss / MIB,
    connectionsLeft: after.connectionsLeft,
  }
}

/**
 * The scenario's numbers from what was measured (see MetricDef.source): `rate` turns a
 * counter's growth over the window into a rate; any other source must be among `results`.
 */
function pickValues(def: ScenarioDef, results: Record<string, number>, rate: (counter: string) => number): Record<string, number> {
  const values: Record<string, number> = {}
  for (const m of def.metrics) {
    const source = m.source ?? 'rate:received'
    let v: number
    if (source.startsWith('rate:')) v = rate(source.slice('rate:'.length))
    else {
      const r = results[source]
      if (r === undefined) throw new Error(`the load reported no '${source}' for ${m.key}`)
      v = r
    }
    values[m.key] = v * (m.scale ?? 1)
  }
  return values
}

/** A failed check in the generator (Mark.problem) is an error, never a number. */
function checkMark(m: Mark): void {
  if (m.problem !== undefined) throw new Error(`check failed: ${m.problem}`)
}

async function runWindow(def: ScenarioDef, b: BrokerHandle, gen: IpcClient, firstRep: boolean): Promise<RepResult> {
  const setupMs = def.setupTimeoutMs ?? 60_000
  try {
    // Memory at rest of a fresh process, before any client connects (see afterFlood).
    if (def.afterFlood && b.idle === undefined) {
      await sleep(500)
      b.idle = await restingStats(b)
    }
    // Memory scenarios: the broker's growth from before the load's setup to after it.
    let memory: Record<string, number> = {}
    let before: BrokerStats | null = null
    if (def.memory) {
      await sleep(500)
      before = await brokerStats(b, true)
    }
    const setup = await gen.request<Record<string, number> | null>('start', startArgs(def, b), setupMs)
    if (before) memory = memoryGrowth(before, await brokerStats(b, true))
    // A fresh broker process is still compiling its hot path; give its first repetition longer.
    await sleep(firstRep ? 2 * warmupMs : warmupMs)
    // The window is timed by the generator's marks; the broker's CPU is read from /proc
    // around them (a saturated broker may answer IPC late). A stats request sent at the start
    // of the window is timed as a rough measure of the broker's event-loop lag under load.
    const lagProbe = timed(brokerStats(b))
    const m0 = machineBusyUs()
    const c0 = brokerCpu(b)
    const g0 = await gen.request<Mark>('mark', { phase: 'begin' }, 10_000)
    await sleep(durationMs)
    const g1 = await gen.request<Mark>('mark', { phase: 'end' }, 10_000)
    const c1 = brokerCpu(b)
    const m1 = machineBusyUs()
    const lag = await lagProbe.then((r) => r.ms, () => NaN)
    // Counters simply stop when a broker dies, which would read as a (low) result.
    if (!b.ipc.alive) throw new Error('broker process died during the measurement window')
    checkMark(g1)
    const seconds = (g1.t - g0.t) / 1000
    const delta = (k: string): number => ((g1.counters[k] ?? 0) - (g0.counters[k] ?? 0))
    const rest = def.afterFlood ? await restAfterFlood(b, gen) : {}
    const values = pickValues(def, { ...setup, ...memory, ...g1.metrics, ...rest }, (k) => delta(k) / seconds)
    const info: Record<string, number> = { windowS: seconds, brokerIpcLagMs: lag, ...setup, ...memory, ...g1.metrics, ...rest }
    for (const k of Object.keys(g1.counters)) info[`${k}PerS`] = delta(k) / seconds
    const brokerCpuPct = (100 * (c1.cpuUs - c0.cpuUs)) / ((c1.t - c0.t) * 1000)
    const genCpuPct = (100 * (g1.cpuUs - g0.cpuUs)) / ((g1.t - g0.t) * 1000)
    // Whatever else kept the machine busy meanwhile (other jobs, kernel): a large share
    // means the numbers of this repetition are not trustworthy.
    const otherCpuPct = m0 === null || m1 === null
      ? null
      : Math.max(0, (100 * (m1 - m0)) / ((c1.t - c0.t) * 1000) - brokerCpuPct - genCpuPct)
    return { values, brokerCpuPct, genCpuPct, otherCpuPct, info }
  } finally {
    await gen.request('stop', null, 20_000).catch(() => {})
    await sleep(SETTLE_MS)
  }
}

/**
 * The load torn down (the generator lets in-flight traffic arrive, then closes every client),
 * the broker's memory at rest compared with its idle level. A broker that dies meanwhile (Aedes
 * overflows its stack with deep queues) keeps the window's numbers, with n/a here: its death is
 * reported when its process is next used or at the end of the scenario, as before.
 */
async function restAfterFlood(b: BrokerHandle, gen: IpcClient): Promise<Record<string, number>> {
  const idle = b.idle
  try {
    if (!idle) throw new Error('no idle memory level for this broker process')
    await gen.request('stop', null, 60_000)
    return afterFlood(idle, await restingStats(b))
  } catch (err) {
    if (b.ipc.alive) throw err
    return { heapAfterFloodPct: NaN, rssAfterFloodMiB: NaN }
  }
}

/**
 * A two-phase load (persistent sessions, retained messages): the generator's `start` runs the
 * first phase, the broker's memory is read (scenarios with `memory`), `finish` runs the second;
 * each phase times itself, and a failed check fails the repetition. No CPU columns: the phases
 * are too short and uneven for a meaningful share of a core.
 */
async function runOneshot(def: ScenarioDef, b: BrokerHandle, gen: IpcClient): Promise<RepResult> {
  const phaseMs = def.setupTimeoutMs ?? 60_000
  await sleep(500)
  const before = def.memory ? await brokerStats(b, true) : null
  try {
    const setup = await gen.request<Record<string, number> | null>('start', startArgs(def, b), phaseMs)
    const memory = before ? memoryGrowth(before, await brokerStats(b, true)) : {}
    const finish = await gen.request<Record<string, number>>('finish', null, phaseMs)
    const m = await gen.request<Mark>('mark', { phase: 'end' }, 10_000)
    if (!b.ipc.alive) throw new Error('broker process died during the scenario')
    checkMark(m)
    const results = { ...setup, ...memory, ...finish }
    const values = pickValues(def, results, () => NaN)
    return { values, brokerCpuPct: null, genCpuPct: null, otherCpuPct: null, info: { ...results, ...m.counters } }
  } finally {
    await gen.request('stop', null, 60_000).catch(() => {})
  }
}

async function runMemory(def: ScenarioDef, b: BrokerHandle, gen: IpcClient): Promise<RepResult> {
  if (def.spec.kind !== 'idle') throw new Error('memory scenario needs an idle load')
  // Let start-up allocation and JIT settle before the baseline.
  await sleep(500)
  const before = await brokerStats(b, true)
  try {
    await gen.request('start', startArgs(def, b), def.setupTimeoutMs ?? 90_000)
    await sleep(1000)
    const after = await brokerStats(b, true)
    const m = await gen.request<Mark>('mark', { phase: 'end' }, 30_000)
    const connected = m.counters.connected ?? 0
    if (connected < def.spec.clients) throw new Error(`only ${connected}/${def.spec.clients} clients still connected`)
    const perConn = (x: number | null, y: number | null): number =>
      x === null || y === null ? NaN : (y - x) / connected / 1024
    const results = { rssPerConn: perConn(before.rss, after.rss), heapPerConn: perConn(before.heapUsed, after.heapUsed) }
    return {
      values: pickValues(def, results, () => NaN),
      brokerCpuPct: null,
      genCpuPct: null,
      otherCpuPct: null,
      info: { connected, rssBefore: before.rss, rssAfter: after.rss, heapBefore: before.heapUsed ?? NaN, heapAfter: after.heapUsed ?? NaN },
    }
  } finally {
    await gen.request('stop', null, 60_000).catch(() => {})
  }
}

/**
 * Several floods in a row on one broker process (`phases`), each for the window's duration and
 * torn down; the broker's memory at rest is read when the process is fresh (rss0, heap0) and
 * after each phase (rss1, heap1 ...), in MiB. Levels that keep rising from phase to phase, and
 * from a deep phase to the same one later, are memory that floods leave behind.
 */
async function runFloods(def: ScenarioDef, b: BrokerHandle, gen: IpcClient): Promise<RepResult> {
  const phases = def.phases ?? []
  const results: Record<string, number> = {}
  const note = (i: number, r: Resting): void => {
    results[`rss${i}`] = r.stats.rss / MIB
    results[`heap${i}`] = r.stats.heapUsed === null ? NaN : r.stats.heapUsed / MIB
    results[`heapCode${i}`] = r.stats.heapCode === null ? NaN : r.stats.heapCode / MIB
    results[`connectionsLeft${i}`] = r.connectionsLeft
  }
  await sleep(500)
  note(0, await restingStats(b))
  let done = 0
  try {
    for (const [i, phase] of phases.entries()) {
      await gen.request('start', startArgs(def, b, phase.spec), def.setupTimeoutMs ?? 60_000)
      await sleep(durationMs)
      const m = await gen.request<Mark>('mark', { phase: 'end' }, 10_000)
      checkMark(m)
      results[`received${i + 1}`] = m.counters.received ?? 0
      if (!m.counters.received) throw new Error('nothing was delivered')
      await gen.request('stop', null, 60_000)
      if (!b.ipc.alive) throw new Error('broker process died')
      note(i + 1, await restingStats(b))
      done = i + 1
    }
  } catch (err) {
    // The error replaces the numbers, so it carries the levels read before it (Aedes dies in
    // the deep phase: its fan-in level is still worth reading).
    const levels = Array.from({ length: done + 1 }, (_, i) =>
      `${formatNumber(results[`rss${i}`], 1)}${Number.isFinite(results[`heap${i}`]) ? `/${formatNumber(results[`heap${i}`], 1)}` : ''}`)
    const phase = phases[done]
    throw new Error(`phase ${done + 1} (${phase?.name ?? '?'}): ${errorText(err)}; RSS/heap at rest before it, MiB: ${levels.join(', ')}`, { cause: err })
  } finally {
    await gen.request('stop', null, 60_000).catch(() => {})
  }
  return { values: pickValues(def, results, () => NaN), brokerCpuPct: null, genCpuPct: null, otherCpuPct: null, info: results }
}

// ---------------------------------------------------------------- main

function describe(def: ScenarioDef, r: RepResult): string {
  const vals = def.metrics.map((m) => `${formatNumber(r.values[m.key], m.digits)} ${m.unit}`)
  const cpu = r.brokerCpuPct === null
    ? ''
    : `  cpu broker ${r.brokerCpuPct.toFixed(0)}% gen ${r.genCpuPct?.toFixed(0)}% other ${r.otherCpuPct?.toFixed(0) ?? '?'}%`
  const fallback = def.spec.kind === 'connect' && connectChurn === null ? ` ${NODE_GEN}` : ''
  return vals.join(', ') + fallback + cpu
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function main(): Promise<void> {
  const t0 = Date.now()
  checkWire()
  const brokers: BrokerName[] = []
  const notes: Partial<Record<BrokerName, string>> = {}
  if (wanted.includes('flashmq')) {
    const where = locateFlashmq(root)
    if ('binary' in where) flashmqPath = where.binary
    else if ('buildScript' in where) {
      process.stdout.write(`Building FlashMQ once with ${where.buildScript} (a few minutes; cached in ~/.cache/culex-anchors)...\n`)
      try {
        flashmqPath = await buildFlashmq(where.buildScript, FLASHMQ_BUILD_MS)
      } catch (err) {
        notes.flashmq = `skipped: ${errorText(err)}`
      }
      // The build is not part of the run's time budget.
      deadline.refresh()
    } else notes.flashmq = `skipped: ${where.reason}`
  }
  for (const name of wanted) {
    if (notes[name]) continue
    if (name === 'mosquitto' && !mosquittoPath) notes[name] = 'skipped: mosquitto not on PATH'
    else if (name === 'culex' && !existsSync(path.join(root, 'src', 'index.ts'))) notes[name] = 'skipped: src/index.ts does not exist yet'
    else brokers.push(name)
  }
  // The connect load from a C program: the Node workers saturate their core before a C broker does.
  let connectLoad: string | null = null
  const connectDefs = defs.filter((d) => d.spec.kind === 'connect')
  if (connectDefs.length) {
    const built = buildConnectChurn()
    if ('binary' in built) {
      connectChurn = built.binary
      connectLoad = `native, bench/connect-churn.c (${built.binary})`
    } else {
      connectLoad = `Node workers, ${built.reason}: they saturate before a C broker does; numbers marked ${NODE_GEN}`
      for (const d of connectDefs) {
        d.title += ` ${NODE_GEN}`
        d.metrics = d.metrics.map((m) => ({ ...m, label: `${m.label} ${NODE_GEN}` }))
      }
    }
  }
  process.stdout.write(`Culex bench: ${reps} rep(s), ${warmupMs} ms warm-up + ${durationMs} ms window, ` +
    `${PAYLOAD_BYTES}-byte payload, ${os.cpus().length} cores, Node ${process.version}\n`)
  for (const name of wanted) process.stdout.write(`  ${name.padEnd(9)} ${notes[name] ?? 'included'}\n`)
  if (connectLoad) process.stdout.write(`  connect load: ${connectLoad}\n`)

  const gen = new IpcClient(forkChild('load-generator.ts', [], []), 'load generator')
  await gen.notice(['ready'], 30_000)

  // The `tls` scenario's certificate: made once, removed at exit. Without openssl it is skipped.
  let certProblem: string | null = null
  if (defs.some((d) => d.listener === 'tls')) {
    try {
      const made = makeCert()
      cert = made
      process.on('exit', () => made.remove())
    } catch (err) {
      certProblem = errorText(err)
    }
  }
  const nofile = openFilesLimit()

  /** Why `name` cannot run `def` on this machine, or null. */
  const cannot = (def: ScenarioDef, name: BrokerName): string | null => {
    const why = def.unsupported?.[name]
    if (why !== undefined) return why
    if (def.listener === 'tls' && certProblem !== null) return certProblem
    // Node raises its soft limit to the hard one by itself, and so does every broker here
    // (Mosquitto inherits it, FlashMQ is given it): only the hard limit counts.
    if (def.connections !== undefined && nofile !== null && nofile < def.connections + FD_MARGIN) {
      return `${def.connections.toLocaleString('en-US')} connections need ${(def.connections + FD_MARGIN).toLocaleString('en-US')} open files ` +
        `per process; the hard limit here is ${nofile.toLocaleString('en-US')} (raise it: ulimit -Hn as root, LimitNOFILE=, docker --ulimit nofile=)`
    }
    return null
  }

  const results: Results = {}
  for (const def of defs) {
    process.stdout.write(`\n${def.title}\n`)
    const reps_: Partial<Record<BrokerName, RepResult[]>> = {}
    const errors: Partial<Record<BrokerName, string>> = {}
    const skipped: Partial<Record<BrokerName, string>> = {}
    const fail = (name: BrokerName, err: unknown): void => {
      errors[name] = errors[name] ? `${errors[name]}; ${errorText(err)}` : errorText(err)
      process.stdout.write(`  ${name.padEnd(9)} error: ${errorText(err)}\n`)
    }
    const skip = (name: BrokerName, why: string): void => {
      skipped[name] = `skipped: ${why}`
      process.stdout.write(`  ${name.padEnd(9)} skipped: ${why}\n`)
    }
    const record = (name: BrokerName, rep: number, r: RepResult): void => {
      ;(reps_[name] ??= []).push(r)
      process.stdout.write(`  ${name.padEnd(9)} rep ${rep + 1}/${reps}  ${describe(def, r)}\n`)
    }
    const able: BrokerName[] = []
    for (const name of brokers) {
      const why = cannot(def, name)
      if (why === null) able.push(name)
      else skip(name, why)
    }
    const measure = (b: BrokerHandle, firstRep: boolean): Promise<RepResult> =>
      def.kind === 'memory' ? runMemory(def, b, gen)
        : def.kind === 'oneshot' ? runOneshot(def, b, gen)
          : def.kind === 'floods' ? runFloods(def, b, gen)
            : runWindow(def, b, gen, firstRep)

    if (def.kind === 'memory' || def.kind === 'floods' || def.fresh) {
      // A fresh broker per repetition: RSS never shrinks back, so a reused process would
      // measure the previous repetition's leftovers (and retained messages, sessions and
      // subscriptions would carry over).
      for (let rep = 0; rep < reps; rep++) {
        for (const name of rotate(able, rep)) {
          if (skipped[name]) continue
          let b: BrokerHandle | null = null
          try {
            b = await startBroker(name, def)
            record(name, rep, await measure(b, true))
          } catch (err) {
            if (err instanceof Unsupported) skip(name, err.message)
            else fail(name, err)
          } finally {
            if (b) await stopBroker(b)
          }
        }
      }
    } else {
      // One broker process per broker for all repetitions, interleaved, so slow drift of the
      // machine (thermal, neighbours) hits every broker alike. A broker that died is started
      // again for the next repetition, and the death is reported.
      const handles = new Map<BrokerName, BrokerHandle>()
      const unstartable = new Set<BrokerName>()
      const warmed = new Set<BrokerHandle>()
      const ensure = async (name: BrokerName): Promise<BrokerHandle | null> => {
        const b = handles.get(name)
        if (b?.ipc.alive) return b
        if (b) {
          fail(name, new Error('broker process died (see its stderr above); restarted'))
          await stopBroker(b)
        }
        try {
          const fresh = await startBroker(name, def)
          handles.set(name, fresh)
          return fresh
        } catch (err) {
          unstartable.add(name)
          if (err instanceof Unsupported) skip(name, err.message)
          else fail(name, err)
          return null
        }
      }
      await Promise.all(able.map(ensure))
      for (let rep = 0; rep < reps; rep++) {
        for (const name of rotate(able, rep)) {
          if (unstartable.has(name)) continue
          const b = await ensure(name)
          if (!b) continue
          const firstRep = !warmed.has(b)
          warmed.add(b)
          try {
            record(name, rep, await measure(b, firstRep))
          } catch (err) {
            fail(name, err)
            if (err instanceof TimeoutError) {
              // A broker that stopped answering may still be spinning, and would take the CPU of
              // the brokers measured after it (Aedes hung in fanout10k put `other` at 30-90% for
              // the rest of the run). Stopped now, it starts afresh for its next repetition.
              await stopBroker(b)
              handles.delete(name)
            }
          }
        }
      }
      for (const [name, b] of handles) if (!b.ipc.alive) fail(name, new Error('broker process died (see its stderr above)'))
      await Promise.all([...handles.values()].map(stopBroker))
    }

    const row: Partial<Record<BrokerName, Cell>> = {}
    for (const name of wanted) {
      const skippedWhy = notes[name] ?? skipped[name]
      if (skippedWhy) {
        row[name] = { reps: [], median: {}, brokerCpuPct: null, genCpuPct: null, otherCpuPct: null, skipped: skippedWhy }
        continue
      }
      const rs = reps_[name] ?? []
      row[name] = { reps: rs, ...summarize(rs, def.metrics), ...(errors[name] ? { error: errors[name] } : {}) }
    }
    results[def.id] = row
  }

  await endChild(gen, null)

  process.stdout.write(`\nMedians of ${reps} repetition(s), ±half their range; ratios are Culex ÷ other ` +
    '(rates: >1 is better; latency, memory: <1 is better)\n\n')
  process.stdout.write(resultsTable(defs, results, wanted) + '\n')
  process.stdout.write('\nCPU during the window, % of one core (broker / load generator; `!` = generator near saturation, the rate is then a floor for the broker)\n\n')
  process.stdout.write(cpuTable(defs, results, wanted) + '\n')
  const failed = Object.entries(results).flatMap(([id, row]) =>
    Object.entries(row).filter(([, c]) => c?.error).map(([b, c]) => `  ${id} / ${b}: ${c?.error}`))
  const busyReps = Object.values(results).flatMap((row) =>
    Object.values(row).flatMap((c) => c?.reps ?? []).filter((r) => (r.otherCpuPct ?? 0) > BUSY_WARN_PCT))
  if (busyReps.length) {
    process.stdout.write(`\nWarning: in ${busyReps.length} repetition(s) other processes used more than ${BUSY_WARN_PCT}% ` +
      'of a core during the window; those numbers understate every broker. Run on an otherwise idle machine.\n')
  }
  // Per-scenario skips (a broker without MQTT 5, the open-files limit ...); whole-run ones are listed at the top.
  const skips = Object.entries(results).flatMap(([id, row]) =>
    Object.entries(row).filter(([b, c]) => c?.skipped && !notes[b as BrokerName]).map(([b, c]) => `  ${id} / ${b}: ${c?.skipped}`))
  if (skips.length) process.stdout.write(`\nSkipped:\n${skips.join('\n')}\n`)
  if (failed.length) process.stdout.write(`\nErrors:\n${failed.join('\n')}\n`)
  process.stdout.write(`\nTotal time ${((Date.now() - t0) / 1000).toFixed(0)} s\n`)

  if (flags.json) {
    const cpu = os.cpus()
    const doc = {
      date: new Date().toISOString(),
      machine: {
        cores: cpu.length, model: cpu[0]?.model ?? 'unknown', memoryBytes: os.totalmem(),
        platform: `${os.platform()} ${os.release()}`, node: process.version,
      },
      options: { reps, warmupMs, durationMs, payloadBytes: PAYLOAD_BYTES, scale, brokers: wanted, notes, connectLoad },
      scenarios: defs.map((d) => ({ ...d, results: results[d.id] })),
    }
    writeFileSync(flags.json, JSON.stringify(doc, null, 2) + '\n')
    process.stdout.write(`Wrote ${flags.json}\n`)
  }
  // Only Culex failing fails the run: a crash of a broker we compare against is its problem,
  // and is reported above.
  const culexFailures = Object.values(results).filter((row) => row.culex?.error).length
  return culexFailures ? Promise.reject(new Error(`${culexFailures} Culex scenario(s) failed`)) : undefined
}


main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${errorText(err)}\n`)
    process.exit(1)
  },
)
