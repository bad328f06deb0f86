// Durable persistence benchmark: Culex on SQLite and on Redis against Aedes on
// aedes-persistence-redis and Mosquitto with persistence on, in the same run.
//
//   npm run bench -- --durable                              all durable scenarios, 5–10 minutes
//   npm run bench -- --durable --quick                      1 repetition × 1 s windows, smaller fills
//   npm run bench -- --durable --only culex-sqlite,mosquitto   (culex = both Culex adapters)
//   npm run bench -- --durable --scenarios pairs,offline,growth,restart
//   npm run bench -- --durable --json durable.json          every repetition as JSON
//   npm run bench -- --durable --cpu-prof DIR               V8 CPU profiles of the Culex processes
//
// Scenarios (all MQTT 3.1.1 QoS 1, 64-byte payloads; brokers in bench/durable-brokers.ts, load
// in bench/durable-load.ts):
//   pairs    50 publishers → 50 subscribers in persistent sessions (clean=false), a topic per
//            pair, 16 unacknowledged PUBLISH per publisher; acknowledged publishes/s (PUBACKs
//            the publishers receive), deliveries/s
//   offline  one persistent session subscribes and goes offline; 50 publishers (16
//            unacknowledged each) publish to its topic, so every message joins its queue;
//            acknowledged publishes/s over a fixed count (20k warm-up, then 150k measured, so the
//            queue stays under the 200k limit and no broker is timed dropping messages)
//   growth   the offline queue filled 0 → 1k → 10k → 100k → 190k; bytes written per message in each
//            stage (/proc/PID/io of the process that writes the store, and the store's files)
//   restart  10,000 persistent sessions with 100,000 queued messages (10 each), then a graceful
//            restart: start → listening, and RSS after the restore
//
// A durable Culex acknowledges only after the commit that holds the message; Aedes acknowledges
// after aedes-persistence-redis wrote it (appendfsync always); Mosquitto acknowledges from memory
// and saves its database later (autosave_interval, default 1800 s, and at shutdown).

import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import {
  DURABLE_BROKERS, LABELS, launchDurable, MAX_QUEUED, type DurableBroker, type DurableBrokerName,
} from './durable-brokers.js'
import type { DurableStartArgs, SessionsArgs } from './durable-load.js'
import { IpcClient } from './ipc.js'
import type { Mark } from './load-types.js'
import { findMosquitto, machineBusyUs, procCpuUs, procIo, procRss, waitQuiet as waitQuietFor, type ProcIo } from './proc.js'
import { formatNumber, median, rotate, table } from './report.js'
import { benchTempDirs, hasRedisServer } from './redis-server.js'
import { checkWire } from './wire-check.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const PAYLOAD_BYTES = 64
const CLIENTS = 50
const WINDOW = 16
const RUN_DEADLINE_MS = 25 * 60_000
/** Before each measurement, wait up to QUIET_MAX_MS for the machine to be under QUIET_PCT % of a core busy. */
const QUIET_PCT = 25
const QUIET_MAX_MS = 30_000
/** Floors the durable-persistence issue sets for this 2-core machine, acknowledged QoS 1 msg/s. */
const FLOORS: Partial<Record<DurableBrokerName, number>> = { 'culex-sqlite': 20_000, 'culex-redis': 15_000 }

const SCENARIOS = ['pairs', 'offline', 'growth', 'restart'] as const
type ScenarioId = (typeof SCENARIOS)[number]
const GROWTH_BROKERS: DurableBrokerName[] = ['culex-sqlite', 'culex-redis', 'aedes-redis', 'mosquitto']
const RESTART_BROKERS: DurableBrokerName[] = ['culex-sqlite', 'culex-redis', 'mosquitto']

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err))
const say = (s: string): void => { process.stdout.write(s) }


const kib = (b: number): string => `${formatNumber(b / 1024 / 1024, 1)} MiB`

export async function runDurable(argv: string[]): Promise<number> {
  const { values: flags } = parseArgs({
    args: argv,
    options: {
      durable: { type: 'boolean', default: true },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      scenarios: { type: 'string' },
      json: { type: 'string' },
      reps: { type: 'string' },
      duration: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  })
  if (flags.help) {
    say(`usage: npm run bench -- --durable [--quick] [--only ${DURABLE_BROKERS.join(',')}] [--scenarios ${SCENARIOS.join(',')}]
                        [--reps N] [--duration MS] [--json FILE] [--cpu-prof DIR]
  --only culex means both Culex adapters; growth runs once per broker, restart skips aedes-redis.
`)
    return 0
  }
  const positive = (v: string | undefined, fallback: number, name: string): number => {
    if (v === undefined) return fallback
    const n = Number(v)
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${v}`)
    return n
  }
  const quick = flags.quick === true
  const reps = positive(flags.reps, quick ? 1 : 3, 'reps')
  const durationMs = Math.min(positive(flags.duration, quick ? 1000 : 3000, 'duration'), 30_000)
  const warmupMs = quick ? 500 : 1000
  // The last stage (to 190,000, just under the limit) shows whether the cost per message stays
  // put once SQLite's checkpoints (every 4,000 WAL pages) are part of it.
  const growthStages = quick ? [1_000, 10_000] : [1_000, 10_000, 100_000, 190_000]
  // offline: warm-up (twice that for a broker's first repetition), then the measured messages;
  // the queue stays under MAX_QUEUED (200,000) throughout.
  const offlineWarmup = quick ? 5_000 : 20_000
  const offlineMeasured = quick ? 30_000 : 150_000
  if (2 * offlineWarmup + offlineMeasured >= MAX_QUEUED) throw new Error('the offline scenario would overflow the queue limit')
  const restartSessions = quick ? 1_000 : 10_000
  const restartPerSession = 10
  const cpuProfDir = flags['cpu-prof'] ? path.resolve(flags['cpu-prof']) : null
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true })

  let wanted: DurableBrokerName[] = [...DURABLE_BROKERS]
  if (flags.only) {
    const names = new Set<DurableBrokerName>()
    for (const raw of flags.only.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (raw === 'culex') { names.add('culex-sqlite'); names.add('culex-redis'); continue }
      if (raw === 'aedes') { names.add('aedes-redis'); continue }
      if (!(DURABLE_BROKERS as readonly string[]).includes(raw)) throw new Error(`unknown broker '${raw}' (have: culex, ${DURABLE_BROKERS.join(', ')})`)
      names.add(raw as DurableBrokerName)
    }
    wanted = DURABLE_BROKERS.filter((b) => names.has(b))
  }
  const scenarioIds: ScenarioId[] = flags.scenarios
    ? flags.scenarios.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
      if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown durable scenario '${s}' (have: ${SCENARIOS.join(', ')})`)
      return s as ScenarioId
    })
    : [...SCENARIOS]

  const mosquittoPath = findMosquitto()
  const notes: Partial<Record<DurableBrokerName, string>> = {}
  if (!mosquittoPath) notes.mosquitto = 'skipped: mosquitto not on PATH'
  if (!hasRedisServer()) {
    notes['culex-redis'] = 'skipped: redis-server not on PATH'
    notes['aedes-redis'] = 'skipped: redis-server not on PATH'
  }
  const brokers = wanted.filter((b) => !notes[b])

  // ------------------------------------------------------------ processes

  const children = new Set<ChildProcess>()
  const track = (c: ChildProcess): void => {
    children.add(c)
    c.once('exit', () => children.delete(c))
  }
  const killEverything = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    // The stores: a SIGKILLed redis-server or broker leaves its files behind.
    for (const dir of benchTempDirs) rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', killEverything)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping brokers, redis-servers and load generator\n`)
      killEverything()
      process.exit(130)
    })
  }
  setTimeout(() => {
    process.stderr.write(`bench: still running after ${RUN_DEADLINE_MS / 60_000} min, giving up\n`)
    killEverything()
    process.exit(1)
  }, RUN_DEADLINE_MS).unref()

  const launchOpts = { mosquittoPath, cpuProfDir, track }
  const genChild = fork(path.join(here, 'durable-load.ts'), [], {
    cwd: root, execArgv: [...process.execArgv], stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  track(genChild)
  const gen = new IpcClient(genChild, 'load generator')
  await gen.notice(['ready'], 30_000)

  let tagCounter = 0
  const newTag = (): string => `d${(tagCounter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`

  const t0 = Date.now()
  checkWire()
  say(`Culex durable bench: ${reps} rep(s), ${warmupMs} ms warm-up + ${durationMs} ms window, ${PAYLOAD_BYTES}-byte payload, ` +
    `${CLIENTS} clients × ${WINDOW} unacked, ${os.cpus().length} cores, Node ${process.version}\n`)
  for (const b of wanted) say(`  ${LABELS[b].padEnd(13)} ${notes[b] ?? 'included'}\n`)

  const json: Record<string, unknown> = {}
  const errors: string[] = []
  const fail = (where: string, err: unknown): void => {
    errors.push(`${where}: ${errorText(err)}`)
    say(`  ${where} error: ${errorText(err)}\n`)
  }
  const output: string[] = []

  // ------------------------------------------------------------ throughput scenarios

  interface WindowResult {
    ackedPerS: number
    deliveredPerS: number
    brokerCpuPct: number
    redisCpuPct: number | null
    genCpuPct: number
    otherCpuPct: number | null
    /** Per acknowledged message, of the process writing the store (Culex for SQLite, redis-server for Redis, Mosquitto). */
    writeBytesPerMsg: number
    wcharPerMsg: number
    queuedAtEnd: number
    unacked: number
  }

  const storePid = (b: DurableBroker): number => b.redis?.pid ?? b.pid

  const waitQuiet = (): Promise<void> => waitQuietFor(say, QUIET_PCT, QUIET_MAX_MS)

  async function runWindow(load: 'pairs' | 'offline', b: DurableBroker, firstRep: boolean): Promise<WindowResult> {
    const args: DurableStartArgs = { port: b.port, tag: newTag(), load, clients: CLIENTS, window: WINDOW, payloadBytes: PAYLOAD_BYTES }
    let stopped = false
    // The offline queue must stay under the brokers' limit (MAX_QUEUED) while it is measured, or
    // they would be timed dropping messages: a fixed number of messages, not a fixed time.
    if (load === 'offline') args.budget = 0
    try {
      await waitQuiet()
      await gen.request('start', args, 120_000)
      if (load === 'offline') await gen.request('fill', { n: offlineWarmup * (firstRep ? 2 : 1), timeoutMs: 120_000 }, 130_000)
      else await sleep(firstRep ? 2 * warmupMs : warmupMs)
      const cpu = (): { b: number; r: number | null; t: number } => ({
        b: procCpuUs(b.pid) ?? NaN, r: b.redis ? procCpuUs(b.redis.pid) ?? NaN : null, t: performance.now(),
      })
      const m0 = machineBusyUs()
      const c0 = cpu()
      const io0 = procIo(storePid(b))
      const g0 = await gen.request<Mark>('mark', null, 10_000)
      if (load === 'offline') await gen.request('fill', { n: offlineMeasured, timeoutMs: 300_000 }, 310_000)
      else await sleep(durationMs)
      const g1 = await gen.request<Mark>('mark', null, 10_000)
      const io1 = procIo(storePid(b))
      const c1 = cpu()
      const m1 = machineBusyUs()
      if (!b.alive()) throw new Error('broker process died during the window')
      const s = (g1.t - g0.t) / 1000
      const d = (k: string): number => (g1.counters[k] ?? 0) - (g0.counters[k] ?? 0)
      const wallUs = (c1.t - c0.t) * 1000
      const brokerCpuPct = (100 * (c1.b - c0.b)) / wallUs
      const redisCpuPct = c0.r === null || c1.r === null ? null : (100 * (c1.r - c0.r)) / wallUs
      const genCpuPct = (100 * (g1.cpuUs - g0.cpuUs)) / ((g1.t - g0.t) * 1000)
      const otherCpuPct = m0 === null || m1 === null ? null
        : Math.max(0, (100 * (m1 - m0)) / wallUs - brokerCpuPct - (redisCpuPct ?? 0) - genCpuPct)
      const acked = d('acked')
      const res: WindowResult = {
        ackedPerS: acked / s,
        deliveredPerS: d('delivered') / s,
        brokerCpuPct, redisCpuPct, genCpuPct, otherCpuPct,
        writeBytesPerMsg: io0 && io1 ? (io1.writeBytes - io0.writeBytes) / acked : NaN,
        wcharPerMsg: io0 && io1 ? (io1.wchar - io0.wchar) / acked : NaN,
        queuedAtEnd: load === 'offline' ? g1.counters.acked ?? 0 : 0,
        unacked: 0,
      }
      stopped = true
      const st = await gen.request<{ unacked: number }>('stop', { cleanup: true }, 180_000)
      res.unacked = st.unacked
      return res
    } finally {
      if (!stopped) await gen.request('stop', { cleanup: false }, 60_000).catch(() => {})
      await sleep(300)
    }
  }

  const throughput: Partial<Record<'pairs' | 'offline', Partial<Record<DurableBrokerName, WindowResult[]>>>> = {}

  async function throughputScenario(id: 'pairs' | 'offline', title: string): Promise<void> {
    say(`\n${title}\n`)
    const results: Partial<Record<DurableBrokerName, WindowResult[]>> = {}
    throughput[id] = results
    const handles = new Map<DurableBrokerName, DurableBroker>()
    try {
      for (const name of brokers) {
        try {
          handles.set(name, await launchDurable(name, launchOpts))
        } catch (err) {
          fail(`${id} / ${LABELS[name]} start`, err)
        }
      }
      const warmed = new Set<DurableBrokerName>()
      for (let rep = 0; rep < reps; rep++) {
        for (const name of rotate(brokers, rep)) {
          const b = handles.get(name)
          if (!b || !b.alive()) continue
          try {
            const r = await runWindow(id, b, !warmed.has(name))
            warmed.add(name)
            ;(results[name] ??= []).push(r)
            say(`  ${LABELS[name].padEnd(13)} rep ${rep + 1}/${reps}  ${formatNumber(r.ackedPerS, 0)} acked/s` +
              (id === 'pairs' ? `, ${formatNumber(r.deliveredPerS, 0)} delivered/s` : `, queue ${formatNumber(r.queuedAtEnd, 0)}`) +
              `  cpu broker ${r.brokerCpuPct.toFixed(0)}%${r.redisCpuPct === null ? '' : ` redis ${r.redisCpuPct.toFixed(0)}%`}` +
              ` gen ${r.genCpuPct.toFixed(0)}% other ${r.otherCpuPct?.toFixed(0) ?? '?'}%` +
              `  store writes ${formatNumber(r.writeBytesPerMsg, 0)} B/msg (write_bytes), ${formatNumber(r.wcharPerMsg, 0)} B/msg (wchar)\n`)
          } catch (err) {
            fail(`${id} / ${LABELS[name]} rep ${rep + 1}`, err)
          }
        }
      }
    } finally {
      for (const b of handles.values()) await b.dispose().catch((err: unknown) => fail(`${id} / ${LABELS[b.name]} stop`, err))
    }
  }

  // ------------------------------------------------------------ growth

  interface Stage { from: number; to: number; ms: number; writeBytesPerMsg: number; wcharPerMsg: number; fileBytesPerMsg: number }
  const growth: Partial<Record<DurableBrokerName, { stages: Stage[]; aofRewrites: number; storeBytes: number }>> = {}

  async function growthScenario(): Promise<void> {
    say(`\nBytes written per message as one offline queue grows ${growthStages.map((n) => formatNumber(n, 0)).join(' → ')} ` +
      `(${CLIENTS} publishers × ${WINDOW} unacked; bytes of the process that writes the store)\n`)
    for (const name of brokers.filter((b) => GROWTH_BROKERS.includes(b))) {
      let b: DurableBroker | null = null
      try {
        b = await launchDurable(name, launchOpts)
        const tag = newTag()
        await gen.request('start', { port: b.port, tag, load: 'offline', clients: CLIENTS, window: WINDOW, payloadBytes: PAYLOAD_BYTES, budget: 0 } satisfies DurableStartArgs, 120_000)
        await sleep(300)
        const stages: Stage[] = []
        const gen0 = b.redis?.aofGeneration() ?? 0
        let prev = 0
        for (const target of growthStages) {
          await waitQuiet()
          const pid = storePid(b)
          const io0 = procIo(pid) as ProcIo
          const f0 = b.storeBytes()
          const r = await gen.request<{ ms: number; acked: number }>('fill', { n: target - prev, timeoutMs: 300_000 }, 310_000)
          const io1 = procIo(pid) as ProcIo
          const f1 = b.storeBytes()
          const n = target - prev
          const st: Stage = {
            from: prev, to: target, ms: r.ms,
            writeBytesPerMsg: (io1.writeBytes - io0.writeBytes) / n,
            wcharPerMsg: (io1.wchar - io0.wchar) / n,
            fileBytesPerMsg: (f1 - f0) / n,
          }
          stages.push(st)
          say(`  ${LABELS[name].padEnd(13)} ${formatNumber(prev, 0).padStart(6)} → ${formatNumber(target, 0).padEnd(7)} ` +
            `${formatNumber(n / (r.ms / 1000), 0).padStart(7)} msg/s  write_bytes ${formatNumber(st.writeBytesPerMsg, 0)} B/msg, ` +
            `wchar ${formatNumber(st.wcharPerMsg, 0)} B/msg, files ${formatNumber(st.fileBytesPerMsg, 0)} B/msg\n`)
          prev = target
        }
        const aofRewrites = (b.redis?.aofGeneration() ?? 0) - gen0
        growth[name] = { stages, aofRewrites, storeBytes: b.storeBytes() }
        if (aofRewrites > 0) say(`  ${LABELS[name]}: Redis rewrote its AOF ${aofRewrites} time(s) during the fill\n`)
        await gen.request('stop', { cleanup: false }, 120_000)
      } catch (err) {
        fail(`growth / ${LABELS[name]}`, err)
        await gen.request('stop', { cleanup: false }, 60_000).catch(() => {})
      } finally {
        await b?.dispose().catch((err: unknown) => fail(`growth / ${LABELS[name]} stop`, err))
      }
    }
  }

  // ------------------------------------------------------------ restart

  interface RestartResult {
    sessionsMs: number; publishMs: number; storeBytes: number
    /**
     * Culex: "culex: persistence …" → "listening" (JSON only). Not the restore time for SQLite:
     * `new Broker` already reads the store synchronously (better-sqlite3) before that line is
     * printed, so the table shows start → listening minus the same for an empty store instead.
     */
    emptyStartMs: number; emptyRss: number
    rssBefore: number; stopMs: number
    startMs: number; brokerToListeningMs: number | null
    rssAtListening: number; rssAfter: number
    probeReceived: number; probeMs: number
  }
  const restart: Partial<Record<DurableBrokerName, RestartResult[]>> = {}

  async function restartScenario(): Promise<void> {
    const total = restartSessions * restartPerSession
    say(`\nRestart with ${formatNumber(restartSessions, 0)} persistent sessions and ${formatNumber(total, 0)} queued messages ` +
      `(${restartPerSession} each), graceful stop, start on the same store\n`)
    const list = brokers.filter((b) => RESTART_BROKERS.includes(b))
    for (let rep = 0; rep < reps; rep++) {
      for (const name of rotate(list, rep)) {
        let b: DurableBroker | null = null
        try {
          b = await launchDurable(name, launchOpts)
          await sleep(1000)
          const emptyRss = procRss(b.pid) ?? NaN
          const emptyStartMs = b.timing.spawnToListeningMs
          const tag = newTag()
          const args: SessionsArgs = { port: b.port, tag, sessions: restartSessions, perSession: restartPerSession, publishers: CLIENTS, window: WINDOW, payloadBytes: PAYLOAD_BYTES }
          const fillR = await gen.request<{ sessionsMs: number; publishMs: number; acked: number }>('sessions', args, 900_000)
          await sleep(500)
          const rssBefore = procRss(b.pid) ?? NaN
          const storeBefore = b.storeBytes()
          await waitQuiet()
          const t = await b.restart()
          const rssAtListening = procRss(b.pid) ?? NaN
          await sleep(1000)
          const rssAfter = procRss(b.pid) ?? NaN
          const storeBytes = Math.max(storeBefore, b.storeBytes())
          const probe = await gen.request<{ received: number; ms: number }>('probe', { port: b.port, clientId: `${tag}-r0`, expect: restartPerSession, timeoutMs: 10_000 }, 30_000)
          const r: RestartResult = {
            sessionsMs: fillR.sessionsMs, publishMs: fillR.publishMs, storeBytes,
            emptyStartMs, emptyRss, rssBefore, stopMs: t.stopMs,
            startMs: t.spawnToListeningMs, brokerToListeningMs: t.brokerToListeningMs,
            rssAtListening, rssAfter, probeReceived: probe.received, probeMs: probe.ms,
          }
          ;(restart[name] ??= []).push(r)
          say(`  ${LABELS[name].padEnd(13)} rep ${rep + 1}/${reps}  fill: sessions ${formatNumber(r.sessionsMs / 1000, 1)} s, ` +
            `messages ${formatNumber(r.publishMs / 1000, 1)} s (${formatNumber(total / (r.publishMs / 1000), 0)}/s); store ${kib(storeBytes)}; ` +
            `stop ${formatNumber(r.stopMs, 0)} ms; start → listening ${formatNumber(r.startMs, 0)} ms` +
            ` vs ${formatNumber(emptyStartMs, 0)} ms empty; RSS ${kib(rssBefore)} before, ${kib(rssAfter)} after restore (${kib(emptyRss)} empty); ` +
            `probe got ${r.probeReceived}/${restartPerSession}\n`)
          if (r.probeReceived !== restartPerSession) errors.push(`restart / ${LABELS[name]}: a restored session received ${r.probeReceived} of its ${restartPerSession} queued messages`)
        } catch (err) {
          fail(`restart / ${LABELS[name]} rep ${rep + 1}`, err)
        } finally {
          await b?.dispose().catch((err: unknown) => fail(`restart / ${LABELS[name]} stop`, err))
        }
      }
    }
  }

  // ------------------------------------------------------------ run

  for (const id of scenarioIds) {
    if (id === 'pairs') await throughputScenario('pairs', `QoS 1 pairs into online persistent sessions: ${CLIENTS} publishers → ${CLIENTS} subscribers (clean=false), ${WINDOW} unacked per publisher`)
    else if (id === 'offline') await throughputScenario('offline', `QoS 1 fan-in into one offline persistent session: ${CLIENTS} publishers, ${WINDOW} unacked each`)
    else if (id === 'growth') await growthScenario()
    else await restartScenario()
  }
  genChild.kill('SIGTERM')

  // ------------------------------------------------------------ tables

  const cols = wanted
  const med = (xs: number[] | undefined): number => median(xs ?? [])
  const spread = (xs: number[]): string => {
    const v = xs.filter(Number.isFinite)
    const m = median(v)
    if (v.length < 2 || !Number.isFinite(m) || m === 0) return ''
    return ` ±${Math.round(((Math.max(...v) - Math.min(...v)) / 2 / Math.abs(m)) * 100)}%`
  }
  const cellOf = (id: 'pairs' | 'offline', b: DurableBrokerName, f: (r: WindowResult) => number, digits = 0): string => {
    if (notes[b]) return 'skipped'
    const rs = throughput[id]?.[b]
    if (!rs || rs.length === 0) return 'error'
    const v = rs.map(f)
    return formatNumber(median(v), digits) + spread(v)
  }
  const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–')
  const ackMed = (id: 'pairs' | 'offline', b: DurableBrokerName): number => med(throughput[id]?.[b]?.map((r) => r.ackedPerS))

  const tpIds = (['pairs', 'offline'] as const).filter((id) => throughput[id])
  if (tpIds.length) {
    const ratioCols: Array<[DurableBrokerName, DurableBrokerName]> = []
    for (const c of ['culex-sqlite', 'culex-redis'] as const) for (const o of ['aedes-redis', 'mosquitto'] as const) if (cols.includes(c) && cols.includes(o)) ratioCols.push([c, o])
    const header = ['scenario', 'unit', ...cols.map((b) => LABELS[b]), ...ratioCols.map(([c, o]) => `${LABELS[c].replace('Culex+', '')}/${LABELS[o].replace('+Redis', '')}`)]
    const rows: string[][] = []
    const label = { pairs: `${CLIENTS} pairs → online persistent sessions`, offline: `fan-in ${CLIENTS}→1 offline persistent session` }
    for (const id of tpIds) {
      rows.push([label[id], 'acked msg/s', ...cols.map((b) => cellOf(id, b, (r) => r.ackedPerS)), ...ratioCols.map(([c, o]) => ratio(ackMed(id, c), ackMed(id, o)))])
      if (id === 'pairs') rows.push([`${label[id]} (deliveries)`, 'delivered/s', ...cols.map((b) => cellOf(id, b, (r) => r.deliveredPerS)), ...ratioCols.map(([c, o]) => ratio(med(throughput[id]?.[c]?.map((r) => r.deliveredPerS)), med(throughput[id]?.[o]?.map((r) => r.deliveredPerS))))])
      rows.push([`${label[id]}: store writes`, 'write_bytes/msg', ...cols.map((b) => cellOf(id, b, (r) => r.writeBytesPerMsg)), ...ratioCols.map(() => '')])
    }
    output.push(`Acknowledged QoS 1 messages/s (PUBACKs received by publishers), median of ${reps}, ±half the range; ratios Culex ÷ other\n\n` + table(header, rows, 2))

    const cpuRows = tpIds.map((id) => [label[id], ...cols.map((b) => {
      const rs = throughput[id]?.[b]
      if (!rs?.length) return '–'
      const red = rs[0]?.redisCpuPct === null ? '' : ` + ${formatNumber(med(rs.map((r) => r.redisCpuPct ?? NaN)), 0)}%`
      const g = med(rs.map((r) => r.genCpuPct))
      return `${formatNumber(med(rs.map((r) => r.brokerCpuPct)), 0)}%${red} / ${formatNumber(g, 0)}%${g >= 90 ? ' !' : ''}`
    }), formatNumber(Math.max(...cols.flatMap((b) => throughput[id]?.[b]?.map((r) => r.otherCpuPct ?? NaN) ?? []).filter(Number.isFinite), 0), 0) + '%'])
    output.push('CPU during the window, % of one core: broker [+ redis-server] / load generator; other = the rest of the machine\n\n' +
      table(['scenario', ...cols.map((b) => LABELS[b]), 'other (max)'], cpuRows, 1))

    const floorLines: string[] = []
    for (const [b, floor] of Object.entries(FLOORS) as Array<[DurableBrokerName, number]>) {
      if (!cols.includes(b)) continue
      for (const id of tpIds) {
        const v = ackMed(id, b)
        floorLines.push(`  ${LABELS[b]} ${id}: ${formatNumber(v, 0)} acked msg/s, floor ${formatNumber(floor, 0)}: ${Number.isFinite(v) && v >= floor ? 'met' : 'NOT met'}`)
      }
    }
    if (floorLines.length) output.push('Floors (acknowledged QoS 1 msg/s on this machine):\n' + floorLines.join('\n'))
  }

  if (Object.keys(growth).length) {
    const rows: string[][] = []
    for (const b of cols) {
      const g = growth[b]
      if (!g) continue
      for (const s of g.stages) {
        rows.push([LABELS[b], `${formatNumber(s.from, 0)} → ${formatNumber(s.to, 0)}`, formatNumber((s.to - s.from) / (s.ms / 1000), 0),
          formatNumber(s.writeBytesPerMsg, 0), formatNumber(s.wcharPerMsg, 0), formatNumber(s.fileBytesPerMsg, 0)])
      }
    }
    output.push('Bytes written per message as one offline queue grows (one fill per broker; the process writing the store: Culex for SQLite, ' +
      'redis-server for Redis, Mosquitto)\n\n' + table(['broker', 'queue', 'msg/s', 'write_bytes/msg', 'wchar/msg', 'file growth/msg'], rows, 2))
  }

  if (Object.keys(restart).length) {
    const rows: string[][] = []
    for (const b of cols) {
      const rs = restart[b]
      if (!rs?.length) continue
      const m = (f: (r: RestartResult) => number): number => med(rs.map(f))
      const withSpread = (f: (r: RestartResult) => number, digits = 0): string => formatNumber(m(f), digits) + spread(rs.map(f))
      rows.push([LABELS[b],
        withSpread((r) => r.startMs),
        formatNumber(m((r) => r.emptyStartMs), 0),
        withSpread((r) => r.startMs - r.emptyStartMs),
        formatNumber(m((r) => r.rssAfter) / 1024 / 1024, 0),
        formatNumber(m((r) => r.emptyRss) / 1024 / 1024, 0),
        formatNumber(m((r) => r.rssBefore) / 1024 / 1024, 0),
        formatNumber(m((r) => r.storeBytes) / 1024 / 1024, 1),
        formatNumber(m((r) => r.stopMs), 0),
        `${formatNumber(m((r) => r.sessionsMs) / 1000, 1)} s + ${formatNumber(m((r) => r.publishMs) / 1000, 1)} s`,
        rs.every((r) => r.probeReceived === restartPerSession) ? 'ok' : 'LOST'])
    }
    output.push(`Restart with ${formatNumber(restartSessions, 0)} persistent sessions and ${formatNumber(restartSessions * restartPerSession, 0)} queued messages, median of ${reps}\n\n` +
      table(['broker', 'start → listening ms', 'empty store: start ms', 'restore ms (difference)', 'RSS after restore MiB',
        'RSS empty MiB', 'RSS before restart MiB', 'store MiB', 'stop ms', 'fill: sessions + messages', 'a session got its 10'], rows, 1))
  }

  say('\n' + output.join('\n\n') + '\n')
  if (errors.length) say(`\nErrors:\n${errors.map((e) => `  ${e}`).join('\n')}\n`)
  say(`\nTotal time ${((Date.now() - t0) / 1000).toFixed(0)} s\n`)

  if (flags.json) {
    const cpu = os.cpus()
    Object.assign(json, {
      date: new Date().toISOString(),
      machine: { cores: cpu.length, model: cpu[0]?.model ?? 'unknown', memoryBytes: os.totalmem(), platform: `${os.platform()} ${os.release()}`, node: process.version },
      options: { reps, warmupMs, durationMs, payloadBytes: PAYLOAD_BYTES, clients: CLIENTS, window: WINDOW, maxQueued: MAX_QUEUED, growthStages, restartSessions, restartPerSession, brokers: wanted, notes },
      throughput, growth, restart, errors,
    })
    writeFileSync(flags.json, JSON.stringify(json, null, 2) + '\n')
    say(`Wrote ${flags.json}\n`)
  }
  const culexFailed = errors.some((e) => e.includes('Culex'))
  return culexFailed ? 1 : 0
}
