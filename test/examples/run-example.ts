import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** A running example program, with what it printed so far. */
export interface RunningExample {
  child: ChildProcess
  output(): string
  /** Waits until stdout has a line matching `pattern`; returns the match. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>
  /** Sends SIGTERM and waits for a clean exit; resolves to the exit code. */
  stop(): Promise<number | null>
}

/** Starts `examples/<name>` the way a user would, resolving `culex-mqtt` to this checkout's sources (tsconfig paths). */
export function runExample(name: string, env: Record<string, string> = {}): RunningExample {
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${name}`], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  // Each waitFor re-checks stdout whenever the program prints or exits: no polling.
  const checks = new Set<() => void>()
  const recheck = (): void => {
    for (const check of [...checks]) check()
  }
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
    recheck()
  })
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  let hasExited = false
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      hasExited = true
      resolve(code)
      recheck()
    }),
  )
  return {
    child,
    output: () => out,
    waitFor: (pattern, ms = 15000) =>
      new Promise((resolve, reject) => {
        const done = (): void => {
          checks.delete(check)
          clearTimeout(timeout)
        }
        const check = (): void => {
          const m = out.match(pattern)
          if (m) {
            done()
            resolve(m)
          } else if (hasExited) {
            done()
            reject(new Error(`examples/${name} exited before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))
          }
        }
        const timeout = setTimeout(() => {
          done()
          reject(new Error(`examples/${name}: no output matching ${pattern} within ${ms} ms\nstdout:\n${out}\nstderr:\n${err}`))
        }, ms)
        checks.add(check)
        check()
      }),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
