// The systems of the cluster scenarios (bench/cluster.ts), every node in its own process:
//
//   culex          a Culex cluster: N CLI processes on one redis-server,
//                  `node --import tsx src/cli/main.ts --port P --host 127.0.0.1
//                   --cluster redis://127.0.0.1:R/0 --node-id nK`
//   aedes          an Aedes cluster: N processes of bench/cluster-aedes-node.ts (Aedes with
//                  mqemitter-redis as its mq and aedes-persistence-redis) on one redis-server
//   culex-single   one Culex CLI process without --cluster: `culex --port P --host 127.0.0.1`
//
// Each cluster gets a redis-server of its own (bench/redis-server.ts: a free port, a temporary
// directory, appendonly yes, appendfsync always), so the two never share a Redis.

import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { IpcClient } from './ipc.js'
import { withTimeout } from './mqtt-wire.js'
import { startBenchRedis, type BenchRedis } from './redis-server.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const HOST = '127.0.0.1'
const CLI = path.join(root, 'src', 'cli', 'main.ts')

export const CLUSTER_SYSTEMS = ['culex', 'aedes', 'culex-single'] as const
export type ClusterSystemName = (typeof CLUSTER_SYSTEMS)[number]

export const SYSTEM_LABELS: Record<ClusterSystemName, string> = {
  culex: 'Culex cluster',
  aedes: 'Aedes cluster',
  'culex-single': 'Culex single broker',
}

export interface ClusterNode {
  /** "n1", "n2", … */
  id: string
  port: number
  /** The node's process, for its CPU from /proc. */
  pid: number
  alive(): boolean
}

export interface ClusterSystem {
  name: ClusterSystemName
  nodes: ClusterNode[]
  /** The cluster's redis-server; null for the single broker. */
  redis: BenchRedis | null
  alive(): boolean
  /** Stops every node, then the redis-server (and removes its directory). */
  dispose(): Promise<void>
}

export interface LaunchOptions {
  /** Every child process is reported here, so the orchestrator can kill them all on exit. */
  track: (c: ChildProcess) => void
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, HOST, () => {
      const addr = probe.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      probe.close(() => resolve(port))
    })
  })
}

const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null

async function stopChild(child: ChildProcess, timeoutMs: number, graceful?: () => Promise<unknown>): Promise<void> {
  if (!running(child)) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  if (graceful) await graceful().catch(() => child.kill('SIGTERM'))
  else child.kill('SIGTERM')
  await withTimeout(exited, timeoutMs, 'node exit').catch(async () => {
    process.stderr.write(`  (pid ${child.pid} did not exit within ${timeoutMs} ms; killed)\n`)
    child.kill('SIGKILL')
    await exited
  })
}

/**
 * Null when this tree's CLI has a --cluster option, otherwise why not. Asks `culex --help`
 * rather than guessing from the sources.
 */
export function culexClusterUnsupported(): string | null {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, '--help'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  if (r.error) return `culex --help failed: ${r.error.message}`
  if (r.status !== 0) return `culex --help exited with ${r.status}: ${(r.stderr || '').trim().split('\n')[0] ?? ''}`
  return /--cluster\b/.test(r.stdout) ? null : 'this tree\'s culex CLI has no --cluster option yet'
}

// ---------------------------------------------------------------- Culex (CLI)

async function spawnCulex(id: string, extraArgs: string[], opts: LaunchOptions): Promise<{ child: ChildProcess; node: ClusterNode }> {
  // The port is chosen here and passed explicitly (not --port 0): a cluster node may announce it.
  const port = await freePort()
  // CULEX_BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the Culex nodes (see bench/README.md).
  const args = [...(process.env.CULEX_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), '--import', 'tsx', CLI, '--port', String(port), '--host', HOST, ...extraArgs]
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  opts.track(child)
  let out = ''
  let err = ''
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4096)
    process.stderr.write(d.toString().replace(/^(?=.)/gm, `  [culex ${id}] `))
  })
  const listening = new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-8192)
      const m = /culex: listening on mqtt:\/\/[^\s]*:(\d+)/.exec(out)
      if (m) resolve(Number(m[1]))
    })
    child.once('exit', (code, signal) => reject(new Error(`culex ${id} exited (code ${code}, signal ${signal}) before listening: ` +
      `${err.trim().split('\n').slice(-2).join(' | ')}`)))
  })
  try {
    const actual = await withTimeout(listening, 60_000, `culex ${id} listening`)
    return { child, node: { id, port: actual, pid: child.pid as number, alive: () => running(child) } }
  } catch (e) {
    child.kill('SIGKILL')
    throw e
  }
}

async function launchCulexCluster(nodes: number, opts: LaunchOptions): Promise<ClusterSystem> {
  const redis = await startBenchRedis(opts.track)
  const children: ChildProcess[] = []
  const list: ClusterNode[] = []
  const dispose = async (): Promise<void> => {
    await Promise.all(children.map((c) => stopChild(c, 30_000)))
    await redis.stop()
  }
  try {
    // One after the other: each node joins a cluster whose earlier nodes are already up.
    for (let k = 1; k <= nodes; k++) {
      const { child, node } = await spawnCulex(`n${k}`, ['--cluster', `${redis.url}/0`, '--node-id', `n${k}`], opts)
      children.push(child)
      list.push(node)
    }
  } catch (e) {
    await dispose()
    throw e
  }
  return { name: 'culex', nodes: list, redis, alive: () => list.every((n) => n.alive()), dispose }
}

async function launchCulexSingle(opts: LaunchOptions): Promise<ClusterSystem> {
  const { child, node } = await spawnCulex('single', [], opts)
  return { name: 'culex-single', nodes: [node], redis: null, alive: () => node.alive(), dispose: () => stopChild(child, 30_000) }
}

// ---------------------------------------------------------------- Aedes (mqemitter-redis + aedes-persistence-redis)

async function launchAedesCluster(nodes: number, opts: LaunchOptions): Promise<ClusterSystem> {
  const redis = await startBenchRedis(opts.track)
  const ipcs: IpcClient[] = []
  const list: ClusterNode[] = []
  const dispose = async (): Promise<void> => {
    await Promise.all(ipcs.map((ipc) => stopChild(ipc.child, 10_000, () => ipc.request('close', null, 2000))))
    await redis.stop()
  }
  try {
    for (let k = 1; k <= nodes; k++) {
      const child = fork(path.join(here, 'cluster-aedes-node.ts'), [redis.url], {
        cwd: root, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      })
      opts.track(child)
      const ipc = new IpcClient(child, `aedes node n${k}`)
      ipcs.push(ipc)
      const n = await ipc.notice(['ready', 'failed'], 60_000)
      if (n.type === 'failed') throw new Error(`aedes node n${k}: ${String(n.message).split('\n')[0]}`)
      list.push({ id: `n${k}`, port: Number(n.port), pid: Number(n.pid), alive: () => ipc.alive })
    }
  } catch (e) {
    await dispose()
    throw e
  }
  return { name: 'aedes', nodes: list, redis, alive: () => list.every((n) => n.alive()), dispose }
}

export function launchSystem(name: ClusterSystemName, nodes: number, opts: LaunchOptions): Promise<ClusterSystem> {
  switch (name) {
    case 'culex':
      return launchCulexCluster(nodes, opts)
    case 'aedes':
      return launchAedesCluster(nodes, opts)
    case 'culex-single':
      return launchCulexSingle(opts)
  }
}
