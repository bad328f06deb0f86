/**
 * Runs `culex` as users do, as a real process: `node --import tsx src/cli/main.ts ...`.
 * Every wait is for a line of output or a process event, with a generous deadline as a guard.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { realTimer, Waiters } from '../helpers/index.js'

export const root = fileURLToPath(new URL('../..', import.meta.url))
export const cli = ['--import', 'tsx', 'src/cli/main.ts']

/** node's arguments: tsx first, then `nodeArgs` (which may then be TypeScript), then the CLI. */
function argv(nodeArgs: string[], args: string[]): string[] {
  return ['--import', 'tsx', ...nodeArgs, 'src/cli/main.ts', ...args]
}

/** How long a CLI may take to start or stop before a test fails: tsx compiles on first run. */
export const CLI_WAIT_MS = 20_000

/** Whether a persistence adapter's module exists in this checkout (they are optional, and may be in the works). */
export function hasAdapter(name: 'sqlite' | 'redis'): boolean {
  return existsSync(new URL(`../../src/persistence/${name}.ts`, import.meta.url))
}

export interface SyncRun {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs culex to its end (for --help and command-line errors). */
export function runCli(args: string[], nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): SyncRun {
  const r = spawnSync(process.execPath, argv(nodeArgs, args), { cwd: root, encoding: 'utf8', timeout: 30_000, env })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

export interface CliRun {
  child: ChildProcessByStdio<null, Readable, Readable>
  /** stdout and stderr as they interleaved. */
  output(): string
  stdout(): string
  stderr(): string
  /** Resolves with the first match in the output so far or to come; fails at once if culex exits first. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>
  /** The port of the `culex: listening on mqtt://...:PORT` line. */
  port(): Promise<number>
  /** Resolves with the exit code (null when killed by a signal) once culex has exited and its output is read. */
  exit(): Promise<number | null>
  /** SIGKILL if still running: for cleanup after a failed test. */
  kill(): void
}

/** Starts culex in the background (with `env` as its whole environment, when given). */
export function startCli(args: string[], nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): CliRun {
  const child = spawn(process.execPath, argv(nodeArgs, args), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  let stdout = ''
  let stderr = ''
  let exitCode: number | null | undefined
  const waiters = new Waiters()
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
    stdout += d.toString()
    waiters.notify()
  })
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString()
    stderr += d.toString()
    waiters.notify()
  })
  // 'close', not 'exit': by then stdout and stderr have been read to their end.
  child.once('close', (code) => {
    exitCode = code
    waiters.notify()
  })
  const waitFor = async (pattern: RegExp): Promise<RegExpMatchArray> => {
    await waiters.until(
      () => pattern.test(out),
      CLI_WAIT_MS,
      () => `output matching ${pattern}; got:\n${out}`,
      () => exitCode !== undefined && !pattern.test(out),
    )
    return out.match(pattern) as RegExpMatchArray
  }
  return {
    child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor,
    port: async () => Number((await waitFor(/listening on mqtt:\/\/\S+:(\d+)/))[1]),
    exit: async () => {
      await waiters.until(() => exitCode !== undefined, CLI_WAIT_MS, () => `culex to exit; got:\n${out}`)
      return exitCode as number | null
    },
    kill: () => {
      if (exitCode === undefined) child.kill('SIGKILL')
    },
  }
}

/**
 * `promise`, or a failure after `ms` naming `what` (and what culex printed, given `run`): an MQTT
 * client whose connection goes away leaves its publish or subscribe pending for ever otherwise.
 */
export function within<T>(promise: Promise<T>, what: string, run?: CliRun, ms: number = CLI_WAIT_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = realTimer(ms, () => {
      reject(new Error(`timed out after ${ms} ms waiting for ${what}${run === undefined ? '' : `; culex printed:\n${run.output()}`}`))
    })
    promise.then(
      (value) => {
        timer.cancel()
        resolve(value)
      },
      (error: unknown) => {
        timer.cancel()
        reject(error as Error)
      },
    )
  })
}
