import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { Limits } from '../options.js'
import { UsageError } from './errors.js'
import { LIMIT_FLAGS, limitsUsage, parseLimitValue } from './limits.js'
import { parsePersistence, PERSISTENCE_FORMS, type PersistenceSpec } from './persistence.js'

export { UsageError } from './errors.js'

/** A flag that sets one key of the configuration (`--http-port` is `http.port`). */
export interface SettingFlag {
  /** Without its dashes. */
  name: string
  path: readonly string[]
  /** integer: digits become a number (anything else is left for the schema to refuse, naming the flag). */
  kind: 'integer' | 'string' | 'boolean'
}

export const SETTING_FLAGS: readonly SettingFlag[] = [
  { name: 'http-port', path: ['http', 'port'], kind: 'integer' },
  { name: 'http-host', path: ['http', 'host'], kind: 'string' },
  { name: 'sys-interval', path: ['sys', 'interval'], kind: 'integer' },
  { name: 'password-file', path: ['auth', 'passwordFile'], kind: 'string' },
  { name: 'acl-file', path: ['auth', 'aclFile'], kind: 'string' },
  { name: 'allow-anonymous', path: ['auth', 'allowAnonymous'], kind: 'boolean' },
  { name: 'log-format', path: ['log', 'format'], kind: 'string' },
  { name: 'log-level', path: ['log', 'level'], kind: 'string' },
]

/** A setting given by a flag, as given (checked with the configuration). */
export interface FlagSetting {
  flag: string
  path: readonly string[]
  value: unknown
}

/** What the command line asked for. */
export interface CliOptions {
  /** `-p/--port`: the first tcp listener's port; undefined when not given. */
  port: number | undefined
  host: string | undefined
  help: boolean
  /** `--persistence` (with `--durability`, `--redis-strict`); undefined when not given (the configuration's, else memory). */
  persistence: PersistenceSpec | undefined
  /** The limits given as flags, only those: the configuration and the broker's defaults fill in the rest. */
  limits: Partial<Limits>
  /** Cluster mode (`--cluster`): the Redis URL, this node's id, its lease. */
  cluster: { redis: string; nodeId: string | undefined; leaseMs: number | undefined } | undefined
  /** `--config FILE`. */
  config: string | undefined
  testConfig: boolean
  printConfig: boolean
  /** `--http-port`, `--log-level` ...: see SETTING_FLAGS. */
  settings: FlagSetting[]
}

export const USAGE = `Usage: culex [options]

Runs a standalone MQTT broker (MQTT 3.1, 3.1.1 and 5.0 over TCP, TLS, WebSocket and unix sockets).

Configuration (see examples/culex.yaml and docs/operations.md):
      --config <file> a YAML or JSON configuration file: listeners (tcp, tls, ws, wss, unix),
                      persistence, cluster, limits, capabilities, sys, auth, protection,
                      http, log and drain; culex.schema.json describes it for editors
      --test-config   check the configuration and the files it names, print
                      "culex: configuration OK" or every error, and exit 0 or 2
      --print-config  print the configuration in effect as YAML, secrets redacted, and exit
  Every setting can also be given in the environment: CULEX_ and its path in capitals, with
  '__' between levels: CULEX_LIMITS__MAX_QUEUED=5, CULEX_AUTH__ALLOW_ANONYMOUS=true,
  CULEX_LISTENERS='[{"type":"tcp","port":1883}]' (values are JSON when they parse as JSON).
  Precedence: defaults < file < environment < flags.

Options:
  -p, --port <port>   TCP port to listen on (default 1883; 0 picks a free port): the first
                      tcp listener's, added if the configuration has none (env CULEX_PORT)
      --host <host>   address to bind (default: all IPv4 and IPv6 addresses) (env CULEX_HOST)
      --persistence <store>
                      where sessions and retained messages are kept (default memory):
                        memory                     in this process; lost when it exits
                        sqlite:PATH                a SQLite database file (needs better-sqlite3)
                        redis://HOST[:PORT][/DB]   a Redis server (needs ioredis); rediss:// for TLS
      --durability <process|power>
                      with sqlite: commits survive a crash of the process (process, the
                      default) or power loss too (power, slower)
      --redis-strict  with redis: the adapter's strict mode (refuses a Redis server
                      configured so that it may lose acknowledged writes)
      --cluster redis://HOST[:PORT][/DB]
                      run as one node of a cluster sharing this Redis (needs ioredis);
                      it keeps the sessions too, so not with --persistence
      --node-id <id>  this node's id in the cluster (default: host name and process id);
                      a node restarted with the same id takes its sessions back
      --cluster-lease-ms <ms>
                      a node's lease in Redis (default 5000): a node that cannot renew
                      it drops its clients, and the others take over a dead node after it
      --password-file <file>
                      a Mosquitto password file (mosquitto_passwd): clients must log in,
                      anonymous ones are refused unless --allow-anonymous
      --acl-file <file>
                      a Mosquitto ACL file: who may publish and subscribe to what
      --allow-anonymous
                      let clients connect without a user name
      --http-port <port>
                      serve /metrics, /healthz and /readyz over HTTP on this port (default off)
      --http-host <host>
                      the address of that HTTP server (default 127.0.0.1)
      --sys-interval <s>
                      seconds between refreshes of the $SYS topics (default 10; 0: none)
      --log-format <text|json>
                      the broker's log lines: "LEVEL message key=value" (text, the default)
                      or one JSON object per line (json), on stdout
      --log-level <error|warn|info|debug>
                      the least severe log lines shown (default info)
  -h, --help          show this help

Limits (non-negative integers; see docs/embedding.md):
${limitsUsage()}

On SIGTERM or SIGINT culex drains: it stops accepting connections, disconnects the clients
(spread over drain.spreadMs), waits up to drain.timeoutMs (default 25000) for in-flight
messages, flushes persistence and exits 0; a second signal exits at once with code 1.
SIGHUP reloads the password and ACL files.
Exit code 2: a mistake on the command line or in the configuration; 1: the broker could not start.

Logging: DEBUG=culex:* culex   shows connections, packets and disconnects.`

type OptionsConfig = NonNullable<ParseArgsConfig['options']>

const FIXED_OPTIONS = {
  port: { type: 'string', short: 'p' },
  // No short form: -h is help, as users expect.
  host: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  persistence: { type: 'string' },
  durability: { type: 'string' },
  'redis-strict': { type: 'boolean' },
  cluster: { type: 'string' },
  'node-id': { type: 'string' },
  'cluster-lease-ms': { type: 'string' },
  config: { type: 'string' },
  'test-config': { type: 'boolean' },
  'print-config': { type: 'boolean' },
} satisfies OptionsConfig

function buildOptions(): OptionsConfig {
  const options: OptionsConfig = { ...FIXED_OPTIONS }
  for (const flag of SETTING_FLAGS) options[flag.name] = { type: flag.kind === 'boolean' ? 'boolean' : 'string' }
  for (const flag of LIMIT_FLAGS) {
    // A limit named like an option would silently take it over: refuse to start instead.
    if (flag.name in options) throw new Error(`limit ${flag.key} would reuse the option --${flag.name}`)
    options[flag.name] = { type: 'string' }
  }
  return options
}

const OPTIONS = buildOptions()

/** Parses argv (without the node and script paths); throws a UsageError with a readable message on bad input. */
export function parseCliArgs(argv: string[], cwd: string = process.cwd()): CliOptions {
  // `-h` used to be --host: say so rather than "Unexpected argument '127.0.0.1'".
  const h = argv.indexOf('-h')
  const next = h === -1 ? undefined : argv[h + 1]
  if (next !== undefined && !next.startsWith('-')) throw new UsageError(`-h is --help; to bind an address use --host ${next}`)
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>
  } catch (error) {
    // parseArgs explains over several lines ("argument is ambiguous ... use '--x=-XYZ'"): keep them.
    throw new UsageError((error as Error).message)
  }
  const string = (name: string): string | undefined => values[name] as string | undefined

  const rawPort = string('port')
  const port = rawPort === undefined ? undefined : Number(rawPort)
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new UsageError(`invalid port ${JSON.stringify(rawPort)}`)

  // The store flags go together on the command line: --durability with --persistence sqlite:PATH ...
  const rawPersistence = string('persistence')
  const persistence = rawPersistence === undefined ? undefined : parsePersistence(rawPersistence, cwd)
  const durability = string('durability')
  if (durability !== undefined) {
    if (durability !== 'process' && durability !== 'power') throw new UsageError(`invalid --durability ${JSON.stringify(durability)}: expected process or power`)
    if (persistence?.kind !== 'sqlite') throw new UsageError('--durability applies to --persistence sqlite:PATH only')
    persistence.durability = durability
  }
  if (values['redis-strict'] === true) {
    if (persistence?.kind !== 'redis') throw new UsageError('--redis-strict applies to --persistence redis://... only')
    persistence.strict = true
  }

  const limits: Partial<Limits> = {}
  for (const flag of LIMIT_FLAGS) {
    const raw = string(flag.name)
    if (raw !== undefined) limits[flag.key] = parseLimitValue(flag.name, raw)
  }

  const redis = string('cluster')
  let cluster: CliOptions['cluster']
  if (redis === undefined) {
    if (string('node-id') !== undefined || string('cluster-lease-ms') !== undefined) throw new UsageError('--node-id and --cluster-lease-ms apply to --cluster only')
  } else {
    if (!/^rediss?:\/\//.test(redis)) throw new UsageError(`invalid --cluster ${JSON.stringify(redis)}: expected redis://HOST[:PORT][/DB]`)
    // The cluster keeps sessions and retained messages in its Redis: a second store would be half of a configuration.
    if (rawPersistence !== undefined) throw new UsageError('--cluster keeps sessions and retained messages in the cluster\'s Redis: do not give --persistence with it')
    const nodeId = string('node-id')
    if (nodeId !== undefined && !/^[A-Za-z0-9._-]{1,128}$/.test(nodeId)) throw new UsageError(`invalid --node-id ${JSON.stringify(nodeId)}: 1 to 128 letters, digits, '.', '_' or '-'`)
    const rawLease = string('cluster-lease-ms')
    const leaseMs = rawLease === undefined ? undefined : Number(rawLease)
    if (leaseMs !== undefined && (!Number.isInteger(leaseMs) || leaseMs < 300 || leaseMs > 600_000)) {
      throw new UsageError(`invalid --cluster-lease-ms ${JSON.stringify(rawLease)}: an integer from 300 to 600000`)
    }
    cluster = { redis, nodeId, leaseMs }
  }

  const settings: FlagSetting[] = []
  for (const flag of SETTING_FLAGS) {
    const value = values[flag.name]
    if (value === undefined) continue
    // Digits become a number; anything else goes to the configuration's check as it is, which names the flag.
    const typed = flag.kind === 'integer' && typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
    settings.push({ flag: `--${flag.name}`, path: flag.path, value: typed })
  }

  return {
    port,
    host: string('host'),
    help: values.help === true,
    persistence,
    limits,
    cluster,
    config: string('config'),
    testConfig: values['test-config'] === true,
    printConfig: values['print-config'] === true,
    settings,
  }
}

export { PERSISTENCE_FORMS }
