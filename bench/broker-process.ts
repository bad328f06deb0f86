// One broker under test, alone in its own process so that its CPU and memory can be read
// without the load generator's mixed in.
//
//   node --expose-gc --import tsx bench/broker-process.ts <culex|aedes|mosquitto|flashmq> [binary]
//        [--listener tcp|ws|tls] [--tls-dir DIR] [--max-connections N]
//   node --import tsx bench/broker-process.ts aedes-redis redis://127.0.0.1:PORT   (bench/durable.ts)
//
// Started by bench/run.ts over fork() (IPC). Listens on an ephemeral port on 127.0.0.1 (plain
// MQTT, or with --listener: MQTT over WebSocket at /mqtt, or MQTT over TLS with DIR/cert.pem and
// DIR/key.pem), prints `PORT <n>` on stdout and sends `{ type: 'ready', port, pid }`; sends
// `{ type: 'unsupported', reason }` instead when this broker cannot listen that way.
// --max-connections raises Culex's connection limit (10,000 by default; the other brokers have
// none here) for the scenarios that hold more. Answers `stats` (cumulative
// CPU time, RSS, heap) and `close`; exits on SIGTERM/SIGINT or when the parent goes away.
// For mosquitto and flashmq this process is only a wrapper: it spawns the native broker and reads
// that process's CPU and RSS from /proc, so every broker is driven through the same interface.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { notify, serveIpc } from './ipc.js'
import { withTimeout } from './mqtt-wire.js'
import { procCpuUs, procRss } from './proc.js'

export type BrokerKind = 'culex' | 'aedes' | 'aedes-redis' | 'mosquitto' | 'flashmq'

export interface BrokerStats {
  /** performance.now() in this process, ms: CPU% is taken over this process's own clock. */
  t: number
  /** Cumulative user+system CPU time of the broker process, microseconds. */
  cpuUs: number
  rss: number
  /** V8 heap in use; null for a broker that is not a Node process. */
  heapUsed: number | null
  /**
   * Of heapUsed, compiled code (V8's code space): it grows as the hot paths are optimised and
   * stays, so heap growth that is all code is not memory a load left behind. Null if not Node.
   */
  heapCode: number | null
}

interface RunningBroker {
  port: number
  pid: number
  stats(gc: boolean): BrokerStats
  close(): Promise<void>
}

const HOST = '127.0.0.1'
/** Where every broker serves MQTT over WebSocket (Mosquitto serves any path). */
export const WS_PATH = '/mqtt'

/** How a broker listens: plain TCP, WebSocket, or TLS with the bench's self-signed certificate (PEM files). */
export type ListenSpec = { kind: 'tcp' } | { kind: 'ws' } | { kind: 'tls'; certFile: string; keyFile: string }

const pem = (file: string): string => readFileSync(file, 'utf8')

/** Whether a native binary has `text` in it: how to tell a Mosquitto built with libwebsockets without starting it. */
function binaryMentions(binary: string, text: string): boolean {
  try {
    return readFileSync(binary).includes(text)
  } catch {
    return false
  }
}

/** This broker cannot listen as asked (not an error of the run): its column says skipped. */
class Unsupported extends Error {}

function nodeStats(gc: boolean): BrokerStats {
  // A collection first makes heapUsed mean "retained", not "retained plus garbage".
  if (gc && typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
  const cpu = process.cpuUsage()
  const mem = process.memoryUsage()
  const code = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'code_space')?.space_used_size ?? NaN
  return { t: performance.now(), cpuUs: cpu.user + cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, heapCode: code }
}

function listenServer(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const addr = server.address()
      if (addr === null || typeof addr === 'string') return reject(new Error('no TCP address'))
      resolve(addr.port)
    })
  })
}

async function startCulex(listen: ListenSpec, maxConnections: number | undefined): Promise<RunningBroker> {
  // Imported lazily so that the other brokers' processes never load (or depend on) Culex.
  const { Broker, tcp, tls: culexTls, websocket } = await import('culex-mqtt')
  const broker = new Broker(maxConnections === undefined ? {} : { limits: { maxConnections } })
  const transport = listen.kind === 'ws'
    ? websocket({ port: 0, host: HOST, path: WS_PATH })
    : listen.kind === 'tls'
      ? culexTls({ port: 0, host: HOST, cert: pem(listen.certFile), key: pem(listen.keyFile) })
      : tcp({ port: 0, host: HOST })
  const listener = await broker.listen(transport)
  const addr = listener.address()
  if (addr === null || typeof addr === 'string') throw new Error('culex listener has no TCP address')
  return { port: addr.port, pid: process.pid, stats: nodeStats, close: () => broker.close() }
}

/**
 * Aedes as it ships; with `redisUrl`, on aedes-persistence-redis (the durable scenarios). Aedes
 * takes any byte stream: over TLS a `tls` server's sockets, over WebSocket the `ws` package's
 * stream of each connection (what its README suggests with websocket-stream, which is not installed).
 */
async function startAedes(listen: ListenSpec, redisUrl?: string): Promise<RunningBroker> {
  const { Aedes } = await import('aedes')
  let persistence: unknown
  if (redisUrl !== undefined) {
    const { default: aedesPersistenceRedis } = await import('aedes-persistence-redis')
    const url = new URL(redisUrl)
    persistence = aedesPersistenceRedis({ host: url.hostname, port: Number(url.port || 6379), family: 4 })
  }
  const aedes = await Aedes.createBroker(persistence === undefined ? {} : { persistence })
  let server: net.Server
  if (listen.kind === 'ws') {
    const httpServer = http.createServer()
    server = httpServer
    const wss = new WebSocketServer({ server: httpServer, path: WS_PATH, perMessageDeflate: false })
    wss.on('connection', (ws, req) => aedes.handle(createWebSocketStream(ws), req))
  } else if (listen.kind === 'tls') {
    server = tls.createServer({ cert: pem(listen.certFile), key: pem(listen.keyFile) }, aedes.handle)
  } else {
    server = net.createServer(aedes.handle)
  }
  const port = await listenServer(server)
  return {
    port,
    pid: process.pid,
    stats: nodeStats,
    close: async () => {
      server.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
}

function freePort(): Promise<number> {
  const probe = net.createServer()
  return listenServer(probe).then((port) => new Promise((resolve) => probe.close(() => resolve(port))))
}

async function waitForPort(name: string, port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited with ${child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode}`)
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: HOST })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${name} did not accept connections on ${port} within ${timeoutMs} ms`)
}

function procStats(name: string, pid: number): BrokerStats {
  const cpuUs = procCpuUs(pid)
  const rss = procRss(pid)
  if (cpuUs === null || rss === null) throw new Error(`cannot read /proc/${pid} (${name} needs Linux /proc for its stats)`)
  return { t: performance.now(), cpuUs, rss, heapUsed: null, heapCode: null }
}

/**
 * A native broker in a child process: writes its config (for the given port) to a temporary
 * directory, starts `binary -c <conf>`, waits until it accepts connections and reads its CPU and
 * RSS from /proc. The lines of its stdout (FlashMQ logs there) and stderr that `keepLine` keeps
 * go to this process's stderr.
 */
async function startNative(
  name: string, binary: string, config: (port: number, spare: number) => string[], keepLine: (line: string) => boolean = () => true,
): Promise<RunningBroker> {
  const port = await freePort()
  // A second port, for Mosquitto's WebSocket scenario (see startMosquitto).
  const spare = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), `culex-bench-${name}-`))
  const conf = path.join(dir, `${name}.conf`)
  writeFileSync(conf, [...config(port, spare), ''].join('\n'))
  const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  for (const stream of [child.stdout, child.stderr]) {
    let partial = ''
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (keepLine(line)) process.stderr.write(`${line}\n`)
    })
  }
  const cleanup = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  try {
    await waitForPort(name, port, child, 5000)
  } catch (err) {
    cleanup()
    throw err
  }
  // Read once at start-up; removing it now leaves nothing behind even if this wrapper is killed.
  rmSync(dir, { recursive: true, force: true })
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name} has no pid`)
  return {
    port,
    pid,
    stats: () => procStats(name, pid),
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      await withTimeout(exited, 2000, `${name} exit`).catch(() => child.kill('SIGKILL'))
      cleanup()
    },
  }
}

function startMosquitto(binary: string, listen: ListenSpec): Promise<RunningBroker> {
  if (listen.kind === 'ws' && !binaryMentions(binary, 'lws_')) throw new Unsupported('this mosquitto is built without websockets')
  // Stock limits on purpose (queues, inflight): the comparison is against an out-of-the-box broker.
  return startNative('mosquitto', binary, (port, spare) => [
    ...(listen.kind === 'ws'
      // Mosquitto 2.0.11 refuses to start ("Unable to start any listening sockets") with a
      // WebSocket listener alone, so a plain one, unused, comes first.
      ? [`listener ${spare} ${HOST}`, `listener ${port} ${HOST}`, 'protocol websockets']
      : [`listener ${port} ${HOST}`]),
    // Read after Mosquitto has dropped root for its `mosquitto` user: run.ts makes them readable.
    ...(listen.kind === 'tls' ? [`certfile ${listen.certFile}`, `keyfile ${listen.keyFile}`] : []),
    'allow_anonymous true',
    'persistence false',
    'max_connections -1',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
  // Over TLS the generator closes its sockets without a close_notify at teardown; Mosquitto
  // logs each one as an error ("unexpected eof while reading").
  ], (line) => !line.includes('unexpected eof while reading'))
}

/**
 * FlashMQ with one worker thread (the comparison is per core) and QoS queues deep enough that
 * the bench's windows never make it drop (its defaults are 512 messages / 64 KiB per client);
 * everything else as shipped, e.g. client_max_write_buffer_size 1 MiB. No storage_dir: no
 * persistence, like the other brokers here.
 */
function startFlashmq(binary: string, listen: ListenSpec): Promise<RunningBroker> {
  // FlashMQ raises its open-files limit to 1,000,000 by default and logs an error when it may
  // not; ask for what this process may have (plenty for the bench's 2,000 idle clients).
  let hardNofile: string | undefined
  try {
    hardNofile = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]
  } catch { /* no /proc: leave FlashMQ's default */ }
  return startNative('flashmq', binary, (port) => [
    'thread_count 1',
    ...(hardNofile ? [`rlimit_nofile ${hardNofile}`] : []),
    'allow_anonymous true',
    'max_qos_msg_pending_per_client 65535',
    'max_qos_bytes_pending_per_client 67108864',
    'log_level warning',
    'listen {',
    `  protocol ${listen.kind === 'ws' ? 'websockets' : 'mqtt'}`,
    '  inet_protocol ip4',
    `  inet4_bind_address ${HOST}`,
    `  port ${port}`,
    ...(listen.kind === 'tls' ? [`  fullchain ${listen.certFile}`, `  privkey ${listen.keyFile}`] : []),
    '}',
  // log_level applies once the config is read: drop the INFO/NOTICE lines printed before that.
  ], (line) => !/\] \[(INFO|NOTICE)\] /.test(line))
}

function listenSpec(kind: string | undefined, tlsDir: string | undefined): ListenSpec {
  if (kind === undefined || kind === 'tcp') return { kind: 'tcp' }
  if (kind === 'ws') return { kind: 'ws' }
  if (kind === 'tls') {
    if (tlsDir === undefined) throw new Error('--listener tls needs --tls-dir')
    return { kind: 'tls', certFile: path.join(tlsDir, 'cert.pem'), keyFile: path.join(tlsDir, 'key.pem') }
  }
  throw new Error(`unknown --listener ${kind}`)
}

async function main(): Promise<void> {
  const { values: opts, positionals } = parseArgs({
    options: { 'listener': { type: 'string' }, 'tls-dir': { type: 'string' }, 'max-connections': { type: 'string' } },
    allowPositionals: true,
  })
  const [kind, extra] = positionals as [BrokerKind | undefined, string | undefined]
  const listen = listenSpec(opts.listener, opts['tls-dir'])
  const maxConnections = opts['max-connections'] === undefined ? undefined : Number(opts['max-connections'])
  let broker: RunningBroker
  if (kind === 'culex') broker = await startCulex(listen, maxConnections)
  else if (kind === 'aedes') broker = await startAedes(listen)
  else if (kind === 'aedes-redis') broker = await startAedes(listen, extra ?? 'redis://127.0.0.1:6379')
  else if (kind === 'mosquitto') broker = await startMosquitto(extra ?? 'mosquitto', listen)
  else if (kind === 'flashmq') broker = await startFlashmq(extra ?? 'flashmq', listen)
  else throw new Error(`usage: broker-process.ts <culex|aedes|aedes-redis|mosquitto|flashmq> [mosquitto/flashmq binary | redis URL], got ${kind}`)

  let closing = false
  const shutdown = async (): Promise<void> => {
    if (closing) return
    closing = true
    // A broker that cannot close in time is not what this process is measuring; just go.
    setTimeout(() => process.exit(0), 3000).unref()
    await broker.close().catch(() => {})
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown())
  process.on('SIGINT', () => void shutdown())

  serveIpc({
    stats: (args) => broker.stats((args as { gc?: boolean } | undefined)?.gc === true),
    close: () => { setImmediate(() => void shutdown()); return null },
  }, () => void shutdown())

  process.stdout.write(`PORT ${broker.port}\n`)
  notify({ type: 'ready', port: broker.port, pid: broker.pid })
}

main().catch((err: unknown) => {
  if (err instanceof Unsupported) {
    notify({ type: 'unsupported', reason: err.message })
    setTimeout(() => process.exit(1), 100)
    return
  }
  const message = err instanceof Error ? err.stack ?? err.message : String(err)
  notify({ type: 'failed', message })
  process.stderr.write(`broker-process: ${message}\n`)
  // Let the IPC message flush before going.
  setTimeout(() => process.exit(1), 100)
})
