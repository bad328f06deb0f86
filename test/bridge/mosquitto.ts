/**
 * A real Mosquitto for the bridge tests: started on a given port with a config file, its output
 * kept line by line, stopped with SIGTERM (so it writes its persistence file) and awaited.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { Waiters } from '../helpers/index.js'

/** A running Mosquitto. */
export interface Mosquitto {
  readonly lines: string[]
  /** Waits for an output line. */
  waitFor(predicate: (line: string) => boolean, what: string, ms?: number): Promise<void>
  /** SIGTERM (it saves its persistence file), SIGKILL after 3 s; resolves on exit. */
  stop(): Promise<void>
}

/** Starts Mosquitto on 127.0.0.1:`port` with persistence in `dir`, and waits until it listens. */
export function startMosquitto(program: string, dir: string, port: number): Promise<Mosquitto> {
  return startMosquittoWith(program, dir, port, [])
}

/**
 * `startMosquitto` with more lines in its config after the listener's (a `connection` block, to
 * bridge it to Culex, say).
 */
export async function startMosquittoWith(program: string, dir: string, port: number, extra: readonly string[]): Promise<Mosquitto> {
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'log_type all',
      'persistence true',
      `persistence_location ${dir}/`,
      // Run as root, Mosquitto would switch to the user 'mosquitto', who cannot write to `dir`.
      `user ${userInfo().username}`,
      ...extra,
      '',
    ].join('\n'),
  )
  const child: ChildProcess = spawn(program, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const waiters = new Waiters()
  let partial = ''
  const take = (d: Buffer): void => {
    const parts = (partial + d.toString()).split('\n')
    partial = parts.pop() ?? ''
    lines.push(...parts)
    waiters.notify()
  }
  child.stdout?.on('data', take)
  child.stderr?.on('data', take)
  child.once('error', () => {})
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const waitFor = (predicate: (line: string) => boolean, what: string, ms = 10_000): Promise<void> =>
    waiters.until(() => lines.some(predicate), ms, () => `${what}; mosquitto output:\n${lines.join('\n')}`, () => child.exitCode !== null)
  await waitFor((l) => / running$/.test(l), 'mosquitto running')
  return {
    lines,
    waitFor,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const kill = setTimeout(() => child.kill('SIGKILL'), 3_000)
      await exited
      clearTimeout(kill)
    },
  }
}
