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
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    output: () => out,
    waitFor: (pattern, ms = 15000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const m = out.match(pattern)
          if (m) {
            clearInterval(timer)
            clearTimeout(timeout)
            resolve(m)
          }
          return m !== null
        }
        const timer = setInterval(check, 20)
        const timeout = setTimeout(() => {
          clearInterval(timer)
          reject(new Error(`examples/${name}: no output matching ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))
        }, ms)
        void exited.then(() => {
          if (!check()) {
            clearInterval(timer)
            clearTimeout(timeout)
            reject(new Error(`examples/${name} exited before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))
          }
        })
      }),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
