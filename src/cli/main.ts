#!/usr/bin/env node
import type { AddressInfo } from 'node:net'
import { mosquittoAuth, type MosquittoAuth } from '../auth/mosquitto/index.js'
import { Broker, type DrainOptions } from '../broker.js'
import type { ClusterOptions } from '../cluster/options.js'
import { dashboard } from '../dashboard/handler.js'
import { startOperationsServer, type OperationsServer } from '../http/server.js'
import type { BrokerOptions, Limits, ProtectionOptions } from '../options.js'
import { parseCliArgs, USAGE, type CliOptions } from './args.js'
import { printConfig } from './config/print.js'
import { resolveConfig, type ResolvedConfig } from './config/resolve.js'
import type { CulexConfig } from './config/schema.js'
import { ConfigError, firstLine, StartupError, UsageError } from './errors.js'
import { renameLimitsInMessage } from './limits.js'
import { describeListener, planListener, planListeners, type ListenerPlan } from './listeners.js'
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
  // Without a handler SIGHUP would end the process.
  process.on('SIGHUP', () => {
    if (auth === undefined) {
      say.info('SIGHUP received: no auth files to reload')
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
    ...auth?.hooks,
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

  if (config.http?.port !== undefined) {
    try {
      // The dashboard takes every path the operations endpoints do not, from '/'.
      const board = dashboard(broker)
      operations = await startOperationsServer(broker, { port: config.http.port, host: config.http.host, fallback: (req, res) => board(req, res) })
    } catch (error) {
      await failed(`http: cannot listen on ${config.http.host}:${config.http.port}: ${firstLine(error)}`)
    }
    if (stopping) return
    say.info(`dashboard, metrics and health on ${httpUrl((operations as OperationsServer).address())} (/, /metrics, /healthz, /readyz)`)
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
}

main().catch((error: unknown) => {
  say.error(error instanceof StartupError ? error.message : firstLine(error))
  process.exit(1)
})
