// Request/response over the Node IPC channel between bench/run.ts and its child processes
// (brokers and load generator). Every request has a deadline, and a child whose parent goes
// away exits, so a crashed or killed orchestrator never leaves load running.

import type { ChildProcess } from 'node:child_process'
import { TimeoutError } from './mqtt-wire.js'

export interface Request { id: number; cmd: string; args?: unknown }
export interface Response { id: number; ok: boolean; result?: unknown; error?: string }
/** Unsolicited messages from a child, e.g. `{ type: 'ready', port }`. */
export interface Notice { type: string; [key: string]: unknown }

function isResponse(m: unknown): m is Response {
  return typeof m === 'object' && m !== null && typeof (m as Response).id === 'number' && 'ok' in m
}

export class IpcClient {
  private nextId = 1
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private readonly notices: Notice[] = []
  private readonly noticeWaiters: Array<() => void> = []
  private exitReason: string | null = null

  constructor(readonly child: ChildProcess, readonly name: string) {
    child.on('message', (m: unknown) => {
      if (isResponse(m)) {
        const w = this.waiting.get(m.id)
        if (!w) return
        this.waiting.delete(m.id)
        if (m.ok) w.resolve(m.result)
        else w.reject(new Error(`${name}: ${m.error ?? 'unknown error'}`))
      } else if (typeof m === 'object' && m !== null && typeof (m as Notice).type === 'string') {
        this.notices.push(m as Notice)
        for (const wake of this.noticeWaiters.splice(0)) wake()
      }
    })
    child.on('exit', (code, signal) => {
      this.exitReason = `${name} exited (code ${code}, signal ${signal})`
      for (const w of this.waiting.values()) w.reject(new Error(this.exitReason))
      this.waiting.clear()
      for (const wake of this.noticeWaiters.splice(0)) wake()
    })
  }

  get alive(): boolean {
    return this.exitReason === null
  }

  request<T>(cmd: string, args: unknown, timeoutMs: number): Promise<T> {
    if (this.exitReason !== null) return Promise.reject(new Error(this.exitReason))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new TimeoutError(`${this.name}: '${cmd}' got no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v as T) },
        reject: (e) => { clearTimeout(timer); reject(e) },
      })
      this.child.send({ id, cmd, args } satisfies Request)
    })
  }

  /** Waits for the first notice of one of the given types (kept if it arrived before the call). */
  async notice(types: string[], timeoutMs: number): Promise<Notice> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.notices.find((n) => types.includes(n.type))
      if (found) return found
      if (this.exitReason !== null) throw new Error(this.exitReason)
      const left = deadline - Date.now()
      if (left <= 0) throw new TimeoutError(`${this.name}: no '${types.join("' or '")}' within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.noticeWaiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }
}

export type Handler = (args: unknown) => unknown

/** Child side: answer requests from the parent; exit when the parent disconnects. */
export function serveIpc(handlers: Record<string, Handler>, onParentGone: () => void): void {
  if (!process.send) throw new Error('must be started by bench/run.ts (needs an IPC channel)')
  process.on('disconnect', onParentGone)
  process.on('message', (m: unknown) => {
    const req = m as Request
    if (typeof req?.id !== 'number' || typeof req.cmd !== 'string') return
    const reply = (r: Omit<Response, 'id'>): void => {
      if (process.connected) process.send?.({ id: req.id, ...r })
    }
    const handler = handlers[req.cmd]
    if (!handler) return reply({ ok: false, error: `unknown command '${req.cmd}'` })
    Promise.resolve()
      .then(() => handler(req.args))
      .then(
        (result) => reply({ ok: true, result }),
        (err: unknown) => reply({ ok: false, error: err instanceof Error ? err.message : String(err) }),
      )
  })
}

export function notify(n: Notice): void {
  if (process.connected) process.send?.(n)
}
