/**
 * argon2id off the event loop. Each check costs tens of milliseconds of CPU and megabytes of
 * memory by design: computed on the main thread, a flood of CONNECTs with wrong passwords would
 * stall every other client. Node's own `crypto.argon2` (Node 24.7 and later, on libuv's thread
 * pool) is used where it exists; elsewhere one worker thread runs hash-wasm, one check at a time.
 */
import * as crypto from 'node:crypto'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

const require = createRequire(import.meta.url)

/** What an argon2id check needs. */
export interface Argon2Params {
  readonly password: Buffer
  readonly salt: Buffer
  readonly iterations: number
  readonly parallelism: number
  /** KiB. */
  readonly memorySize: number
  readonly hashLength: number
}

type NodeArgon2 = (
  algorithm: 'argon2id',
  parameters: { message: Buffer; nonce: Buffer; parallelism: number; tagLength: number; memory: number; passes: number },
  callback: (error: Error | null, derived: Buffer) => void,
) => void

/** Node's argon2, where this Node has it (its types may not say so yet). */
const nodeArgon2 = (crypto as unknown as { argon2?: NodeArgon2 }).argon2

/** The worker's program: CommonJS, hash-wasm loaded from the path the main thread resolved. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { argon2id } = require(workerData.hashWasm)
parentPort.on('message', ({ id, params }) => {
  argon2id({ ...params, outputType: 'binary' }).then(
    (hash) => parentPort.postMessage({ id, hash }),
    (error) => parentPort.postMessage({ id, error: String(error && error.message ? error.message : error) }),
  )
})
`

interface Pending {
  resolve(hash: Buffer): void
  reject(error: Error): void
}

let worker: Worker | undefined
let nextId = 0
const pending = new Map<number, Pending>()

/** The worker, started at the first check (or by warmArgon2); it holds the process open only while a check is pending. */
function argon2Worker(): Worker {
  if (worker !== undefined) return worker
  // The worker loads hash-wasm by path: an eval'd worker resolves nothing from this package.
  const hashWasm = require.resolve('hash-wasm')
  const started = new Worker(WORKER_SOURCE, { eval: true, workerData: { hashWasm } })
  started.on('message', ({ id, hash, error }: { id: number; hash?: Uint8Array; error?: string }) => {
    const waiting = pending.get(id)
    pending.delete(id)
    // Idle, it must not hold the process open.
    if (pending.size === 0) started.unref()
    if (waiting === undefined) return
    if (hash !== undefined) waiting.resolve(Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength))
    else waiting.reject(new Error(`argon2id: ${error ?? 'failed'}`))
  })
  // A dead worker fails what it held; the next check starts another.
  started.on('error', (error) => fail(started, error))
  started.on('exit', (code) => fail(started, new Error(`argon2id worker exited with code ${code}`)))
  worker = started
  return started
}

function fail(which: Worker, error: Error): void {
  if (worker !== which) return
  worker = undefined
  for (const waiting of pending.values()) waiting.reject(error)
  pending.clear()
}

/** Starts the worker ahead of the first check, where one is needed (a file with argon2id lines was read). */
export function warmArgon2(): void {
  if (nodeArgon2 === undefined && pending.size === 0) argon2Worker().unref()
}

/** Computes an argon2id hash without blocking the event loop. */
export function argon2idHash(params: Argon2Params): Promise<Buffer> {
  if (nodeArgon2 !== undefined) {
    return new Promise((resolve, reject) =>
      nodeArgon2(
        'argon2id',
        { message: params.password, nonce: params.salt, parallelism: params.parallelism, tagLength: params.hashLength, memory: params.memorySize, passes: params.iterations },
        (error, derived) => (error === null ? resolve(derived) : reject(error)),
      ),
    )
  }
  return new Promise((resolve, reject) => {
    const id = nextId++
    const running = argon2Worker()
    // Held open while a check is pending (unref'd again once idle).
    if (pending.size === 0) running.ref()
    pending.set(id, { resolve, reject })
    const { password, salt, iterations, parallelism, memorySize, hashLength } = params
    running.postMessage({ id, params: { password, salt, iterations, parallelism, memorySize, hashLength } })
  })
}
