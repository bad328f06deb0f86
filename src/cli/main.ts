#!/usr/bin/env node
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import nodeTls from 'node:tls'
import { mosquittoAuth, type MosquittoAuth } from '../auth/mosquitto/index.js'
import type { BridgeOptions, BridgeTlsOptions } from '../bridge/options.js'
import { Broker, type DrainOptions } from '../broker.js'
import type { ClusterOptions } from '../cluster/options.js'
import { dashboard, type DashboardHandler } from '../dashboard/handler.js'
import { startOperationsServer, type OperationsServer } from '../http/server.js'
import type { BrokerOptions, Limits, ProtectionOptions } from '../options.js'
import { parseCliArgs, USAGE, type CliOptions } from './args.js'
import { printConfig } from './config/print.js'
import { resolveConfig, type ResolvedConfig } from './config/resolve.js'
import { oneOf, type BridgeConfig, type CulexConfig } from './config/schema.js'
import { ConfigError, firstLine, StartupError, UsageError } from './errors.js'
import { renameLimitsInMessage } from './limits.js'
import { describeListener, planListener, planListeners, tlsFileLoader, type ListenerPlan } from './listeners.js'
import { createLogger, formatEntry, type LogLevel } from './logger.js'
import { createPersistence, redactUrl, requireIoredis, type PersistenceSpec } from './persistence.js'

/** A mistake on the command line: the message, a pointer to --help, exit code 2. */
function usageExit(message: string): never {
  console.error(`culex: ${message}\nRun 'culex --help' for the options.`)
  process.exit(2)
}

/** Mistakes in the configuration: every one, one a line, exit code 2. */
function configExit(problems: readonly string[]): never {
  for (const problem of problems) console.error(`culex: ${problem}`)
  if (problems.some((p) => p.startsWith('--'))) console.error("Run 'culex --help' for the options.")
  process.exit(2)
}

/**
 * Checks the limits given as flags against the broker's own ranges, before anything else: a
 * broker that holds them all is built (in memory) and closed at once. Its errors name the flags.
 */
async function checkLimits(limits: Partial<Limits>): Promise<void> {
  if (Object.keys(limits).length === 0) return
  let probe: Broker
  try {
    probe = new Broker({ limits })
  } catch (error) {
    throw new UsageError(renameLimitsInMessage(firstLine(error)))
  }
  await probe.close()
}

/** culex's own lines (`culex: listening on ...`): text by default, JSON lines with `log.format: json`. */
interface Say {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

const TEXT: Say = {
  info: (message) => console.log(`culex: ${message}`),
  warn: (message) => console.error(`culex: warning: ${message}`),
  error: (message) => console.error(`culex: ${message}`),
}

function jsonLines(): Say {
  const line = (level: LogLevel, message: string): string => `${formatEntry('json', level, message, {}, new Date())}\n`
  return {
    info: (message) => process.stdout.write(line('info', message)),
    warn: (message) => process.stderr.write(line('warn', message)),
    error: (message) => process.stderr.write(line('error', message)),
  }
}

let say: Say = TEXT
let broker: Broker | undefined
let operations: OperationsServer | undefined
let drainOptions: DrainOptions = {}
let stopping = false

/**
 * The first SIGTERM/SIGINT: drain (stop accepting connections, disconnect the clients, wait for
 * in-flight messages, flush persistence), close the HTTP server, exit 0. A second signal while
 * that runs exits at once with code 1.
 */
function stop(signal: string): void {
  if (stopping) {
    say.error(`${signal} received again, exiting without finishing shutdown`)
    process.exit(1)
  }
  stopping = true
  say.info(`${signal} received, shutting down`)
  if (broker === undefined) {
    // Still loading the persistence adapter: nothing opened yet.
    say.info('stopped')
    process.exit(0)
  }
  broker
    .drain(drainOptions)
    .then(() => operations?.close())
    .then(
      () => {
        say.info('stopped')
        process.exit(0)
      },
      (error: unknown) => {
        say.error(`shutdown failed: ${firstLine(error)}`)
        process.exit(1)
      },
    )
}

/** The store asked for, in the form `createPersistence` takes. */
function persistenceSpec(config: CulexConfig): PersistenceSpec {
  const store = config.persistence ?? { type: 'memory' as const }
  switch (store.type) {
    case 'memory':
      return { kind: 'memory' }
    case 'sqlite':
      return store.durability === undefined ? { kind: 'sqlite', path: store.path } : { kind: 'sqlite', path: store.path, durability: store.durability }
    case 'redis':
      return { kind: 'redis', url: store.url, strict: store.strict ?? false }
  }
}

function protectionOptions(config: CulexConfig): ProtectionOptions | undefined {
  const protection = config.protection
  if (protection === undefined) return undefined
  const { bans, ...rest } = protection
  const options: ProtectionOptions = { ...rest }
  if (bans !== undefined) options.bans = bans.map(({ until, ...ban }) => (until === undefined ? ban : { ...ban, until: typeof until === 'string' ? Date.parse(until) : until }))
  return options
}

/** The Mosquitto password and ACL files, read now (a bad file throws `file:line: message`). */
function loadAuth(config: CulexConfig): MosquittoAuth | undefined {
  const auth = config.auth
  if (auth === undefined) return undefined
  try {
    return mosquittoAuth({ passwordFile: auth.passwordFile, aclFile: auth.aclFile, allowAnonymous: auth.allowAnonymous })
  } catch (error) {
    throw new StartupError(`auth: ${firstLine(error)}`)
  }
}

/**
 * The broker hooks of the password and ACL files, except for the broker's own bridges: their local
 * clients (transport 'bridge', made in this process) have no user name and must reach every
 * bridged topic, as Mosquitto's bridges are not subject to its password and ACL files.
 */
function hooksWithBridges(auth: MosquittoAuth | undefined): MosquittoAuth['hooks'] {
  if (auth === undefined) return {}
  const { authenticate, authorizePublish, authorizeSubscribe, authorizeDeliver } = auth.hooks
  const hooks: MosquittoAuth['hooks'] = {}
  if (authenticate !== undefined) hooks.authenticate = (request) => (request.transport === 'bridge' ? true : authenticate(request))
  if (authorizePublish !== undefined) hooks.authorizePublish = (client, message) => (client.transport === 'bridge' ? true : authorizePublish(client, message))
  if (authorizeSubscribe !== undefined) hooks.authorizeSubscribe = (client, subscription) => (client.transport === 'bridge' ? subscription.qos : authorizeSubscribe(client, subscription))
  if (authorizeDeliver !== undefined) hooks.authorizeDeliver = (client, message) => (client.transport === 'bridge' ? true : authorizeDeliver(client, message))
  return hooks
}

/** A Host header naming a loopback address (any port). */
const LOOPBACK_HOST = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(:\d+)?$/i

/** A bridge ready to start: `bridges[i]` for error messages, and its options with the TLS files read. */
interface BridgePlan {
  name: string
  options: BridgeOptions
}

/** A bridge's `tls` as Node's TLS options, the files read now; a file that cannot be read, or keys that do not fit, throw naming them. */
function readBridgeTls(config: NonNullable<BridgeConfig['tls']>, name: string): BridgeTlsOptions {
  const load = tlsFileLoader(name)
  const options: BridgeTlsOptions = {}
  if (config.caFile !== undefined) options.ca = Array.isArray(config.caFile) ? config.caFile.map((ca, i) => load(ca, `caFile[${i}]`)) : load(config.caFile, 'caFile')
  if (config.certFile !== undefined) options.cert = load(config.certFile, 'certFile')
  if (config.keyFile !== undefined) options.key = load(config.keyFile, 'keyFile')
  if (config.passphrase !== undefined) options.passphrase = config.passphrase
  if (config.rejectUnauthorized !== undefined) options.rejectUnauthorized = config.rejectUnauthorized
  if (config.servername !== undefined) options.servername = config.servername
  if (config.alpn !== undefined) options.ALPNProtocols = config.alpn
  try {
    // What the TLS connection would do at start: a key that does not match, a wrong passphrase ...
    nodeTls.createSecureContext(options)
  } catch (error) {
    throw new StartupError(`${name}.tls: ${(error as Error).message}`)
  }
  return options
}

/** The options of `broker.bridge` for one `bridges:` entry, its TLS files read. */
function planBridge(bridge: BridgeConfig, name: string): BridgePlan {
  const { tls, ...rest } = bridge
  const options: BridgeOptions = { ...rest }
  if (tls !== undefined) options.tls = readBridgeTls(tls, name)
  return { name, options }
}

function planBridges(config: CulexConfig): BridgePlan[] {
  return (config.bridges ?? []).map((bridge, i) => planBridge(bridge, `bridges[${i}]`))
}

/** A URL for log lines: its password, if any, as `***`. */
function safeUrl(url: string): string {
  try {
    return redactUrl(url)
  } catch {
    return '<invalid URL>'
  }
}

/**
 * `--test-config` beyond the schema: the files the configuration names (TLS certificates and
 * keys, password and ACL files) can be read and make sense. Every problem, one a line.
 */
function checkFiles(config: CulexConfig): string[] {
  const problems: string[] = []
  const attempt = (check: () => unknown): void => {
    try {
      check()
    } catch (error) {
      problems.push(firstLine(error))
    }
  }
  config.listeners.forEach((listener, i) => attempt(() => planListener(listener, `listeners[${i}]`)))
  attempt(() => loadAuth(config))
  config.bridges?.forEach((bridge, i) => attempt(() => planBridge(bridge, `bridges[${i}]`)))
  return problems
}

function httpUrl(address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}

async function main(): Promise<void> {
  let options: CliOptions
  try {
    options = parseCliArgs(process.argv.slice(2))
    if (options.help) {
      console.log(USAGE)
      return
    }
    await checkLimits(options.limits)
  } catch (error) {
    if (error instanceof UsageError) usageExit(error.message)
    throw error
  }
  let resolved: ResolvedConfig
  try {
    resolved = resolveConfig({ options, env: process.env, cwd: process.cwd() })
  } catch (error) {
    if (error instanceof ConfigError) configExit(error.problems)
    throw error
  }
  const config = resolved.config
  if (options.printConfig) process.stdout.write(printConfig(config, resolved.file))
  if (options.testConfig) {
    const problems = checkFiles(config)
    if (problems.length > 0) configExit(problems)
    console.log('culex: configuration OK')
  }
  if (options.printConfig || options.testConfig) return
  await start(config)
}

async function start(config: CulexConfig): Promise<void> {
  const logger = createLogger({ level: config.log.level, format: config.log.format })
  if (config.log.format === 'json') say = jsonLines()
  drainOptions = { timeoutMs: config.drain.timeoutMs, spreadMs: config.drain.spreadMs }
  if (config.drain.serverReference !== undefined) drainOptions.serverReference = config.drain.serverReference
  if (config.drain.temporary !== undefined) drainOptions.temporary = config.drain.temporary
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))

  // The files first: nothing is opened when one is missing.
  const plans: ListenerPlan[] = planListeners(config)
  const auth = loadAuth(config)
  const bridgePlans = planBridges(config)
  // Without a handler SIGHUP would end the process.
  process.on('SIGHUP', () => {
    if (auth === undefined) {
      say.info('SIGHUP received: no auth files to reload (bridges are not reloaded)')
      return
    }
    auth.reload().then(
      () => say.info('reloaded auth files'),
      (error: unknown) => say.error(`cannot reload auth files, keeping the rules in force: ${firstLine(error)}`),
    )
  })
  if (config.auth?.allowAnonymous === false && config.auth.passwordFile === undefined) {
    say.warn('auth.allowAnonymous is false and there is no auth.passwordFile: no client can connect')
  }

  const common: BrokerOptions = {
    ...hooksWithBridges(auth),
    limits: config.limits,
    capabilities: { ...config.capabilities, maximumQoS: config.capabilities.maximumQoS as 0 | 1 | 2 },
    sys: { interval: config.sys.interval },
    logger,
  }
  const protection = protectionOptions(config)
  if (protection !== undefined) common.protection = protection

  const cluster = config.cluster
  // What a failure to open the store is prefixed with (the cluster's errors say so themselves).
  let storeLabel: string
  if (cluster !== undefined) {
    await requireIoredis()
    if (stopping) return
    const clusterOptions: ClusterOptions = { redis: cluster.redis }
    if (cluster.nodeId !== undefined) clusterOptions.nodeId = cluster.nodeId
    if (cluster.leaseMs !== undefined) clusterOptions.leaseMs = cluster.leaseMs
    if (cluster.prefix !== undefined) clusterOptions.prefix = cluster.prefix
    if (cluster.strict !== undefined) clusterOptions.strict = cluster.strict
    broker = new Broker({ ...common, cluster: clusterOptions })
    storeLabel = ''
    say.info(`cluster node ${cluster.nodeId ?? '(host name and process id)'} on ${redactUrl(cluster.redis)}`)
  } else {
    const spec = persistenceSpec(config)
    const persistence = await createPersistence(spec)
    if (stopping) return
    // Synchronous from the adapter to the broker: a signal finds both or neither.
    broker = new Broker({ ...common, persistence: persistence.adapter })
    storeLabel = spec.kind === 'memory' ? '' : `cannot open persistence ${persistence.label}: `
    say.info(`persistence ${persistence.description}`)
  }

  const failed = async (message: string): Promise<never> => {
    stopping = true
    say.error(message)
    await operations?.close().catch(() => {})
    await broker?.close().catch(() => {})
    process.exit(1)
  }

  const http = config.http
  if (http?.port !== undefined) {
    const admins = http.admins === undefined ? undefined : new Set(http.admins)
    let board: DashboardHandler | undefined
    if (http.dashboard) {
      // With admins, the dashboard asks for HTTP Basic credentials, checked against the password file first.
      board = dashboard(broker, admins === undefined ? {} : { authorizeAdmin: ({ username, authenticated }) => authenticated && admins.has(username) })
    }
    try {
      // The dashboard takes every path the operations endpoints do not, from '/'.
      const open = board
      const fallback =
        open === undefined
          ? undefined
          : (req: IncomingMessage, res: ServerResponse): void => {
              // Without credentials (loopback only), a web page could still reach the dashboard through
              // DNS rebinding: its requests then name the attacker's host. Only loopback names pass.
              if (admins === undefined && !LOOPBACK_HOST.test(req.headers.host ?? '')) {
                res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8' }).end('the dashboard without credentials answers loopback host names only\n')
                return
              }
              open(req, res)
            }
      operations = await startOperationsServer(broker, { port: http.port, host: http.host, fallback })
    } catch (error) {
      await failed(`http: cannot listen on ${http.host}:${http.port}: ${firstLine(error)}`)
    }
    if (stopping) return
    const where = httpUrl((operations as OperationsServer).address())
    if (board === undefined) say.info(`metrics and health on ${where} (/metrics, /healthz, /readyz; no dashboard)`)
    else {
      const posture = admins === undefined ? 'dashboard without credentials' : `dashboard for ${oneOf([...admins])} (password file); metrics and health without credentials`
      say.info(`dashboard, metrics and health on ${where} (/, /metrics, /healthz, /readyz; ${posture})`)
    }
  }

  for (const plan of plans) {
    let address: AddressInfo | string | null
    try {
      address = (await broker.listen(plan.transport)).address()
    } catch (error) {
      // A signal closed the broker while it was starting: stop() exits.
      if (stopping) return
      // The port is taken, or the store would not open: close what did open, then exit 1.
      const listening = ['listen', 'bind', 'getaddrinfo'].includes(String((error as { syscall?: unknown }).syscall))
      const where = listening ? `${plan.name} (${plan.config.type}): ` : storeLabel
      return failed(`${where}${firstLine(error)}`)
    }
    say.info(`listening on ${describeListener(plan.config, address, config.auth)}`)
  }

  if (bridgePlans.length > 0) {
    broker.on('bridgeUp', (name) => say.info(`bridge ${name} up`))
    broker.on('bridgeDown', (name, error) => say.warn(`bridge ${name} down${error === undefined ? '' : `: ${firstLine(error)}`}`))
  }
  for (const plan of bridgePlans) {
    try {
      await broker.bridge(plan.options)
    } catch (error) {
      if (stopping) return
      // The mqtt package is missing, or the broker refused the bridge's local client.
      return failed(`${plan.name} (${plan.options.name}): ${firstLine(error)}`)
    }
    say.info(`bridge ${plan.options.name} to ${safeUrl(plan.options.url)}`)
  }
}

main().catch((error: unknown) => {
  say.error(error instanceof StartupError ? error.message : firstLine(error))
  process.exit(1)
})
