// The `connect` load's native program, bench/connect-churn.c: compiled on first use into a cache
// keyed by its source, and run by the load generator as the load's own process. The Node workers
// it replaces saturated their core (90-100%) while Mosquitto and FlashMQ used ~45% of theirs, so
// the scenario measured the generator. Without a C compiler the Node workers still run, and
// bench/run.ts marks their numbers.

import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freshLoopbacks, HOST } from './dial.js'
import type { Running, StartArgs } from './load-types.js'
import { withTimeout } from './mqtt-wire.js'
import { isExecutable, onPath, procCpuUs } from './proc.js'

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'connect-churn.c')
const FLAGS = ['-O2', '-Wall', '-Wextra']
/**
 * Connections per loopback source address. The client closes first, so its ports stay in
 * TIME_WAIT for a minute, and one address has ~28,000 of them (32768-60999), fewer than a C
 * broker gets through in a run.
 */
const PER_ADDRESS = 20_000

export type ChurnBuild = { binary: string } | { reason: string }

/**
 * The compiled program, from ~/.cache/culex-anchors/connect-churn/<hash>/ (the hash covers the
 * source and the compile command, so an edited source is rebuilt), compiling it there if need
 * be; or why it cannot be had.
 */
export function buildConnectChurn(): ChurnBuild {
  const compiler = ['cc', 'gcc'].find(onPath)
  if (!compiler) return { reason: 'no C compiler (cc or gcc) on PATH to build bench/connect-churn.c' }
  const hash = createHash('sha256').update(readFileSync(SOURCE)).update([compiler, ...FLAGS].join(' ')).digest('hex').slice(0, 16)
  const dir = path.join(os.homedir(), '.cache', 'culex-anchors', 'connect-churn', hash)
  const binary = path.join(dir, 'connect-churn')
  if (isExecutable(binary)) return { binary }
  mkdirSync(dir, { recursive: true })
  // Built under another name and renamed: a bench started meanwhile never runs half a file.
  const tmp = `${binary}.${process.pid}.tmp`
  const r = spawnSync(compiler, [...FLAGS, '-o', tmp, SOURCE], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) {
    rmSync(tmp, { force: true })
    const why = r.error?.message ?? (r.stderr.trim().split('\n')[0] || `exit code ${r.status}`)
    return { reason: `${compiler} could not build bench/connect-churn.c: ${why}` }
  }
  renameSync(tmp, binary)
  return { binary }
}

/** Runs the `connect` load in `binary`; counters and CPU are read from it, the time from the generator. */
export async function startNativeConnect(binary: string, args: StartArgs): Promise<Running> {
  const { port, spec, tag } = args
  if (spec.kind !== 'connect') throw new Error(`not a connect load: ${spec.kind}`)
  const sources = freshLoopbacks(Math.ceil(spec.maxConnections / PER_ADDRESS))
  const child = spawn(binary, [HOST, String(port), String(spec.workers), tag, String(spec.maxConnections), ...sources], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  // One line per byte written to its stdin, in order.
  const waiting: Array<{ resolve: (line: string) => void; reject: (e: Error) => void }> = []
  let exited: string | null = null
  const exit = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
    exited = `connect-churn exited (code ${code}, signal ${signal})`
    for (const w of waiting.splice(0)) w.reject(new Error(exited))
    resolve()
  }))
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
  child.on('error', () => {}) // after the spawn: its exit says what happened
  child.stdin.on('error', () => {}) // EPIPE once it has exited, reported by problem()
  let buffered = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buffered += d
    for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
      waiting.shift()?.resolve(buffered.slice(0, i))
      buffered = buffered.slice(i + 1)
    }
  })
  let started = 0

  return {
    // Asked at the moment of the mark, not sampled: exact at any rate.
    counters: async () => {
      if (exited) throw new Error(exited)
      const answer = new Promise<string>((resolve, reject) => waiting.push({ resolve, reject }))
      child.stdin.write('?')
      const [connections, failures, startedNow] = (await withTimeout(answer, 2000, 'connect-churn counters')).split(' ').map(Number)
      started = startedNow ?? NaN
      return { connections: connections ?? NaN, failures: failures ?? NaN }
    },
    cpuUs: () => procCpuUs(child.pid ?? -1) ?? NaN,
    // The cap keeps the load bounded; reached inside the window, it would make the rate read low.
    problem: () => exited ?? (started >= spec.maxConnections
      ? `the connect load started all of its ${spec.maxConnections} connections before the window ended (raise maxConnections)`
      : null),
    stop: async () => {
      child.stdin.end()
      await withTimeout(exit, 5000, 'connect-churn to exit').catch(() => child.kill('SIGKILL'))
    },
  }
}
