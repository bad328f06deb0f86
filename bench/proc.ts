// CPU time and RSS of any process, read from /proc (Linux). Used for Mosquitto, which cannot be
// asked, and for every broker's CPU during a window: reading from outside does not depend on a
// saturated broker's event loop getting round to answering.

import { spawn } from 'node:child_process'
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

// USER_HZ, the unit of utime/stime in /proc/PID/stat; 100 on every mainstream Linux build.
const CLOCK_TICKS_PER_SECOND = 100

/** Cumulative user+system CPU of `pid` (all its threads), µs; null where /proc is unavailable. */
export function procCpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after "(comm)" start at field 3 (state); utime is field 14, stime field 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    return Number.isFinite(ticks) ? (ticks * 1e6) / CLOCK_TICKS_PER_SECOND : null
  } catch {
    return null
  }
}

/** Resident set size of `pid`, bytes; null where /proc is unavailable. */
export function procRss(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
    return Number.isFinite(kb) ? kb * 1024 : null
  } catch {
    return null
  }
}

/**
 * TCP connections a server listening on 127.0.0.1:`port` still holds open, from /proc/net/tcp:
 * its side of each is ESTABLISHED, or CLOSE_WAIT until it notices the client's FIN and closes
 * (after which its descriptor, buffers and session are gone). Read from outside, so the same
 * for every broker (Mosquitto drops to its own user: its /proc/PID/fd is not ours to read).
 * Null where /proc is unavailable.
 */
export function serverConnections(port: number): number | null {
  let text: string
  try {
    text = readFileSync('/proc/net/tcp', 'utf8')
  } catch {
    return null
  }
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  let n = 0
  for (const line of text.split('\n')) {
    // "  sl: local_address rem_address st ..."; 01 = ESTABLISHED, 08 = CLOSE_WAIT.
    const f = line.trim().split(/\s+/)
    if (f[1] === local && (f[3] === '01' || f[3] === '08')) n++
  }
  return n
}

/** Busy CPU time of the whole machine (all cores), µs; null where /proc/stat is unavailable. */
export function machineBusyUs(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
    // cpu user nice system idle iowait irq softirq steal ...
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)
    return (busy * 1e6) / CLOCK_TICKS_PER_SECOND
  } catch {
    return null
  }
}

/** I/O counters of `pid` from /proc/PID/io (bytes); null where unavailable. */
export interface ProcIo {
  /** Bytes passed to write()/send() and the like (sockets included): what the process asked to write. */
  wchar: number
  /** Bytes the process caused to be sent to storage (counted when it dirties a page of the page cache). */
  writeBytes: number
  /** Of those, bytes whose writeback was cancelled (the file was truncated or deleted first). */
  cancelledWriteBytes: number
}

export function procIo(pid: number): ProcIo | null {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8')
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN)
    const io = { wchar: field('wchar'), writeBytes: field('write_bytes'), cancelledWriteBytes: field('cancelled_write_bytes') }
    return Number.isFinite(io.wchar) && Number.isFinite(io.writeBytes) ? io : null
  } catch {
    return null
  }
}

/** The mosquitto binary, or null: Debian puts it in /usr/sbin, which a non-root PATH often lacks. */
export function findMosquitto(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    if (!dir) continue
    const candidate = path.join(dir, 'mosquitto')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch { /* keep looking */ }
  }
  return null
}

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Whether `command` is an executable file in a directory of PATH. */
export function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && isExecutable(path.join(dir, command)))
}

/** Where the FlashMQ binary is, or the build script that can make it, or why neither is possible. */
export type FlashmqLocation = { binary: string } | { buildScript: string } | { reason: string }

/**
 * The FlashMQ binary: `$CULEX_FLASHMQ`, else what `build-flashmq.sh` leaves in
 * `~/.cache/culex-anchors/flashmq/build/flashmq`, else the script (beside the project, in
 * `../shared/anchors/`) when cmake, make and g++ are there to run it. Never builds by itself.
 */
export function locateFlashmq(root: string): FlashmqLocation {
  const env = process.env.CULEX_FLASHMQ
  if (env) return isExecutable(env) ? { binary: env } : { reason: `CULEX_FLASHMQ=${env} is not an executable file` }
  const cached = path.join(os.homedir(), '.cache', 'culex-anchors', 'flashmq', 'build', 'flashmq')
  if (isExecutable(cached)) return { binary: cached }
  const script = path.resolve(root, '..', 'shared', 'anchors', 'build-flashmq.sh')
  if (!existsSync(script)) return { reason: 'flashmq not built (set CULEX_FLASHMQ to its binary)' }
  const missing = ['cmake', 'make', 'g++'].filter((t) => !onPath(t))
  if (missing.length) return { reason: `flashmq not built and ${missing.join(', ')} missing to build it (apt-get install cmake g++ libssl-dev)` }
  return { buildScript: script }
}

/**
 * Runs build-flashmq.sh (a few minutes on 2 cores; it caches its result) and resolves with the
 * binary's path, the last line it prints; rejects with the script's complaint or on timeout.
 */
export function buildFlashmq(script: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => { clearTimeout(timer); reject(e) })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      const binary = out.trim().split('\n').pop() ?? ''
      if (code === 0 && binary && isExecutable(binary)) return resolve(binary)
      const why = err.trim().split('\n').pop() || (signal ? `killed (${signal}) after ${timeoutMs / 1000} s` : `exit code ${code}`)
      reject(new Error(`build-flashmq.sh failed: ${why}`))
    })
  })
}

/**
 * On a shared machine, waits (at most `maxMs`) until the rest of the machine uses less than
 * `quietPct` of a core, so a window does not start in the middle of someone else's burst; `say`
 * tells what it waits for. The bench's own idle brokers and servers count as "the rest", and use
 * next to nothing.
 */
export async function waitQuiet(say: (s: string) => void, quietPct: number, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs
  let waited = false
  for (;;) {
    const a = machineBusyUs()
    const t = performance.now()
    await new Promise((r) => setTimeout(r, 500))
    const b = machineBusyUs()
    if (a === null || b === null) return
    const busy = (100 * (b - a)) / ((performance.now() - t) * 1000)
    if (busy < quietPct) return
    if (Date.now() > end) {
      say(`  (the machine stayed busy, ${busy.toFixed(0)}% of a core used by others; measuring anyway)\n`)
      return
    }
    if (!waited) say(`  (waiting for the machine to quieten: ${busy.toFixed(0)}% of a core busy)\n`)
    waited = true
  }
}

/** The hard limit on open files of this process (what Node raises its own soft limit to); null where unknown. */
export function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (!m || m[1] === undefined) return null
    return m[1] === 'unlimited' ? Infinity : Number(m[1])
  } catch {
    return null
  }
}
