/**
 * The configuration file of `culex` (`--config culex.yaml`), its environment variables and
 * flags: the one zod schema that gives the file's types, checks it and generates
 * `culex.schema.json`. Everything here is data; `build.ts` turns it into `new Broker(...)`.
 */
import net from 'node:net'
import * as z from 'zod'
import { checkTopic, type BridgeTopic } from '../../bridge/options.js'
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, type Limits } from '../../options.js'
import { LIMIT_HELP } from '../limits.js'

const MAX_SAFE = Number.MAX_SAFE_INTEGER
/** The longest delay `setTimeout` takes, in ms. */
const MAX_TIMER_MS = 2_147_483_647

/**
 * The broker's own ranges for its limits (`LIMIT_RANGES` in src/core.ts, which it does not
 * export), so that a file is checked with positions before a broker exists. A test checks that
 * the broker accepts exactly these.
 */
export const LIMIT_RANGES: Readonly<Record<keyof Limits, readonly [number, number]>> = {
  maxConnections: [1, MAX_SAFE],
  maxPacketSize: [2, 268_435_460],
  maxKeepAlive: [0, 65_535],
  connectTimeoutMs: [1, MAX_TIMER_MS],
  maxInflight: [1, 65_535],
  maxQueued: [0, MAX_SAFE],
  maxQueuedBytes: [0, MAX_SAFE],
  persistentSessionExpiry: [0, 0xffffffff],
  maxSubscriptionsPerClient: [0, MAX_SAFE],
  maxWriteBuffer: [0, MAX_SAFE],
  receiveMaximum: [1, 65_535],
  maxPublishRate: [0, MAX_SAFE],
  topicAliasMaximum: [0, 65_535],
  maxSessionExpiryInterval: [0, 0xffffffff],
}

/** A value as quoted in an error message. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  // A password in a URL (mqtt://user:secret@host) is not echoed.
  const text = (typeof value === 'string' ? JSON.stringify(value) : String(value)).replace(/(\/\/[^/:@\s]*:)[^@/\s]*@/g, '$1***@')
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/** A secret: its errors say what was expected, never what was there. */
const secret = (): z.ZodString => z.string({ error: 'expected a string (not echoed: a secret)' }).min(1, { error: 'expected a non-empty string' })

/** An error message: what was expected, and what was there ("missing" for an absent required key). */
function expected(what: string): (issue: { input?: unknown }) => string {
  return (issue) => (issue.input === undefined ? `missing: expected ${what}` : `expected ${what}, got ${show(issue.input)}`)
}

/** `a, b or c` */
export function oneOf(values: readonly (string | number)[]): string {
  const all = values.map(String)
  return all.length <= 1 ? (all[0] ?? '') : `${all.slice(0, -1).join(', ')} or ${all[all.length - 1]}`
}

function rangeText(min: number, max: number): string {
  if (max >= MAX_SAFE) return min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`
  return `an integer from ${min} to ${max}`
}

/** An integer in [min, max], with one message for every way of missing it. */
export function int(min: number, max: number = MAX_SAFE): z.ZodInt {
  const error = expected(rangeText(min, max))
  return z.int({ error }).min(min, { error }).max(max, { error })
}

const bool = (): z.ZodBoolean => z.boolean({ error: expected('true or false') })

const text = (): z.ZodString => z.string({ error: expected('a string') }).min(1, { error: expected('a non-empty string') })

function choice<const T extends readonly [string, ...string[]]>(values: T): z.ZodEnum<{ [K in T[number]]: K }> {
  return z.enum(values, { error: expected(`one of ${oneOf(values)}`) })
}

const port = (fallback: number): z.ZodDefault<z.ZodInt> => int(0, 65535).default(fallback).describe(`port to listen on; 0 picks a free one (default ${fallback})`)

/** A file name (relative ones are relative to the configuration file, or to the working directory for env and flags). */
const file = (): z.ZodString => text()

const redisUrl = (): z.ZodString =>
  text().superRefine((value, ctx) => {
    const why = redisUrlProblem(value)
    if (why !== undefined) ctx.addIssue({ code: 'custom', message: `expected redis://HOST[:PORT][/DB] or rediss://..., got ${show(value)} (${why})` })
  })

/** Why `value` is not a Redis URL culex accepts, or undefined. */
export function redisUrlProblem(value: string): string | undefined {
  if (!/^rediss?:\/\//i.test(value)) return 'not a redis:// URL'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'not a valid URL'
  }
  if (url.hostname === '') return 'no host'
  if (!/^(\/(\d+)?)?$/.test(url.pathname)) return 'the database after the host must be a number'
  if (url.hash !== '') return 'no #fragment allowed'
  return undefined
}

/** An IPv4/IPv6 address or a CIDR block. */
export function isAddressOrBlock(value: string): boolean {
  const slash = value.indexOf('/')
  if (slash === -1) return net.isIP(value) !== 0
  const family = net.isIP(value.slice(0, slash))
  const bits = value.slice(slash + 1)
  return family !== 0 && /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
}

const address = (): z.ZodString =>
  text().refine(isAddressOrBlock, { error: (issue) => `expected an IPv4 or IPv6 address or a CIDR block such as 10.0.0.0/8, got ${show(issue.input)}` })

// ---------------------------------------------------------------------------------------------
// Listeners

const trustedProxies = (what: string): z.ZodOptional<z.ZodArray<z.ZodString>> =>
  z.array(address(), { error: expected('a list of addresses') }).optional().describe(what)

const PROXY_HELP = 'addresses of the proxies allowed to send a PROXY protocol header (with proxyProtocol: true)'

const tlsSchema = z
  .strictObject({
    cert: text().describe('the server certificate (PEM): a file, read at start, or the PEM text itself'),
    key: text().describe('its private key (PEM): a file, read at start, or the PEM text itself'),
    ca: z
      .union([text(), z.array(text())], { error: expected('a file name or a list of them') })
      .optional()
      .describe('certificate authorities (PEM) that client certificates must chain to: a file or a list of files'),
    passphrase: secret().optional().describe('the passphrase of an encrypted key'),
    requestCert: bool().default(false).describe('ask clients for a certificate'),
    rejectUnauthorized: bool()
      .default(true)
      .describe('with requestCert: refuse clients without a valid certificate (false: certificates optional)'),
    minVersion: choice(['TLSv1.2', 'TLSv1.3']).optional().describe("the oldest TLS version accepted (default Node's, TLSv1.2)"),
    ciphers: text().optional().describe("OpenSSL cipher list (default Node's)"),
  })
  .describe('TLS settings; the files are read at start')

const host = (): z.ZodOptional<z.ZodString> => text().optional().describe('address to bind (default: all IPv4 and IPv6 addresses)')

export const LISTENER_TYPES = ['tcp', 'tls', 'ws', 'wss', 'unix'] as const

const listenerSchema = z.discriminatedUnion(
  'type',
  [
    z
      .strictObject({
        type: z.literal('tcp').describe('MQTT over TCP'),
        port: port(1883),
        host: host(),
        backlog: int(1).optional().describe('pending connection queue length'),
        proxyProtocol: bool().default(false).describe('read a PROXY protocol v1/v2 header (HAProxy, AWS NLB) first'),
        trustedProxies: trustedProxies(PROXY_HELP),
      })
      .describe('MQTT over TCP'),
    z
      .strictObject({
        type: z.literal('tls').describe('MQTT over TLS'),
        port: port(8883),
        host: host(),
        tls: tlsSchema,
        proxyProtocol: bool().default(false).describe('read a PROXY protocol v1/v2 header (sent in clear) before the TLS handshake'),
        trustedProxies: trustedProxies(PROXY_HELP),
      })
      .describe('MQTT over TLS'),
    z
      .strictObject({
        type: z.literal('ws').describe('MQTT over WebSocket'),
        port: port(8080),
        host: host(),
        path: text().default('/mqtt').describe('the URL path MQTT is served at'),
        trustedProxies: trustedProxies('addresses of reverse proxies whose X-Forwarded-For header is believed'),
      })
      .describe('MQTT over WebSocket'),
    z
      .strictObject({
        type: z.literal('wss').describe('MQTT over WebSocket over TLS'),
        port: port(8081),
        host: host(),
        path: text().default('/mqtt').describe('the URL path MQTT is served at'),
        tls: tlsSchema,
        trustedProxies: trustedProxies('addresses of reverse proxies whose X-Forwarded-For header is believed'),
      })
      .describe('MQTT over WebSocket over TLS, on its own port'),
    z
      .strictObject({
        type: z.literal('unix').describe('MQTT over a unix domain socket'),
        path: file().describe('the socket file'),
      })
      .describe('MQTT over a unix domain socket'),
  ],
  { error: expected(`a listener: a mapping with type ${oneOf(LISTENER_TYPES)}`) },
)

// ---------------------------------------------------------------------------------------------
// Store

const persistenceSchema = z
  .discriminatedUnion(
    'type',
    [
      z.strictObject({ type: z.literal('memory').describe('in this process; lost when it exits') }),
      z.strictObject({
        type: z.literal('sqlite').describe('a SQLite database file (needs better-sqlite3)'),
        path: file().describe('the database file'),
        durability: choice(['process', 'power']).optional().describe('commits survive a crash of the process (process, the default) or power loss too (power, slower)'),
      }),
      z.strictObject({
        type: z.literal('redis').describe('a Redis server (needs ioredis)'),
        url: redisUrl().describe('redis://[:PASSWORD@]HOST[:PORT][/DB]; rediss:// for TLS'),
        strict: bool().optional().describe('refuse a Redis server configured so that it may lose acknowledged writes'),
      }),
    ],
    { error: expected('a mapping with type memory, sqlite or redis') },
  )
  .describe('where sessions and retained messages are kept (default: memory); not with cluster')

const clusterSchema = z
  .strictObject({
    redis: redisUrl().describe('the Redis shared by the nodes: redis://[:PASSWORD@]HOST[:PORT][/DB]'),
    nodeId: text()
      .regex(/^[A-Za-z0-9._-]{1,128}$/, { error: expected("1 to 128 letters, digits, '.', '_' or '-'") })
      .optional()
      .describe("this node's id (default: host name and process id); a node restarted with the same id takes its sessions back"),
    leaseMs: int(300, 600_000).optional().describe("a node's lease in Redis, in ms (default 5000)"),
    prefix: text()
      .regex(/^[^{}\s]+$/, { error: expected("a prefix without spaces, '{' or '}'") })
      .optional()
      .describe("what the cluster's keys start with (default culex)"),
    strict: bool().optional().describe('refuse to start when Redis does not fsync every write'),
  })
  .describe('run as one node of a cluster sharing one Redis (needs ioredis); it keeps the sessions too, so not with persistence')

// ---------------------------------------------------------------------------------------------
// Broker options

function limitsShape(): { [K in keyof Limits]: z.ZodDefault<z.ZodInt> } {
  const shape: Record<string, z.ZodDefault<z.ZodInt>> = {}
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>) {
    const [min, max] = LIMIT_RANGES[key]
    shape[key] = int(min, max)
      .default(DEFAULT_LIMITS[key])
      .describe(LIMIT_HELP[key] ?? key)
  }
  return shape as { [K in keyof Limits]: z.ZodDefault<z.ZodInt> }
}

const limitsSchema = z.strictObject(limitsShape()).describe('resource limits (see docs/embedding.md)')

const capabilitiesSchema = z
  .strictObject({
    maximumQoS: int(0, 2).default(DEFAULT_CAPABILITIES.maximumQoS).describe('highest QoS accepted and granted'),
    retainAvailable: bool().default(DEFAULT_CAPABILITIES.retainAvailable).describe('keep retained messages'),
    wildcardSubscriptionAvailable: bool().default(DEFAULT_CAPABILITIES.wildcardSubscriptionAvailable).describe("allow '+' and '#' in filters"),
    subscriptionIdentifiersAvailable: bool().default(DEFAULT_CAPABILITIES.subscriptionIdentifiersAvailable).describe('allow MQTT 5 subscription identifiers'),
    sharedSubscriptionAvailable: bool().default(DEFAULT_CAPABILITIES.sharedSubscriptionAvailable).describe('serve $share/NAME/FILTER subscriptions'),
    responseInformation: text().optional().describe('MQTT 5 Response Information sent to clients that ask for it'),
    validatePayloadFormat: bool().default(DEFAULT_CAPABILITIES.validatePayloadFormat).describe('refuse a PUBLISH marked UTF-8 whose payload is not'),
  })
  .describe('what the broker offers (MQTT 5 CONNACK properties, enforced for every client)')

const sysSchema = z
  .strictObject({
    interval: int(0, Math.floor(MAX_TIMER_MS / 1000))
      .default(10)
      .describe('seconds between refreshes of the $SYS/broker/... topics; 0 turns them off'),
  })
  .describe('Mosquitto-compatible $SYS topics')

const authSchema = z
  .strictObject({
    allowAnonymous: bool()
      .optional()
      .describe('let clients connect without a user name (default: true without a passwordFile, false with one)'),
    passwordFile: file().optional().describe('a Mosquitto password file (mosquitto_passwd: $6$, $7$ or argon2id hashes); reloaded on SIGHUP'),
    aclFile: file().optional().describe('a Mosquitto ACL file (user, topic, pattern lines); reloaded on SIGHUP'),
  })
  .describe('Mosquitto-compatible password and ACL files')

const banSchema = z
  .strictObject({
    clientId: text().optional().describe('a client identifier'),
    username: text().optional().describe('a user name'),
    address: address().optional().describe('an IPv4/IPv6 address or CIDR block'),
    until: z
      .union([int(0), z.iso.datetime({ offset: true })], { error: expected('ms since the epoch or an ISO 8601 date-time such as 2030-01-01T00:00:00Z') })
      .optional()
      .describe('when the ban ends: ms since the epoch or an ISO 8601 date-time (default: never)'),
    reason: text().optional().describe('why, for log lines'),
  })
  .superRefine((ban, ctx) => {
    const given = (['clientId', 'username', 'address'] as const).filter((k) => ban[k] !== undefined)
    if (given.length !== 1) ctx.addIssue({ code: 'custom', message: `give exactly one of clientId, username or address${given.length === 0 ? '' : `, not ${oneOf(given).replace(' or ', ' and ')}`}` })
  })

const flappingSchema = z
  .strictObject({
    maxDisconnects: int(1).optional().describe('connections of one client id that may end within windowMs (default 15)'),
    windowMs: int(1, MAX_TIMER_MS).optional().describe('default 60000'),
    banMs: int(1).optional().describe('how long the client id is banned once over (default 300000)'),
  })
  .describe('flapping detection settings')

const protectionSchema = z
  .strictObject({
    maxConnectionsPerIp: int(0).optional().describe('open connections one IP address may hold (default 0: no limit)'),
    connectRatePerIp: z
      .number({ error: expected('a non-negative number') })
      .min(0, { error: expected('a non-negative number') })
      .optional()
      .describe('new connections per second one IP address may open (default 0: no limit)'),
    bans: z.array(banSchema, { error: expected('a list of bans') }).optional().describe('bans in force from the start'),
    flapping: z
      .union([bool(), flappingSchema], { error: expected('true, false or a mapping of maxDisconnects, windowMs, banMs') })
      .optional()
      .describe('ban clients that connect and drop too often: true (15 in 60 s bans for 5 min), false, or settings'),
  })
  .describe('limits against abusive clients')

const httpSchema = z
  .strictObject({
    port: int(0, 65535).optional().describe('port of the operations server (/, /metrics, /healthz, /readyz); off unless given'),
    host: text().default('127.0.0.1').describe('address it binds; other than 127.0.0.1, ::1 or localhost, the dashboard needs admins (or dashboard: false)'),
    dashboard: bool().default(true).describe('serve the dashboard at / (false: metrics and health only)'),
    admins: z
      .array(text(), { error: expected('a list of user names') })
      .min(1, { error: 'expected at least one user name' })
      .optional()
      .describe('users of auth.passwordFile allowed into the dashboard (HTTP Basic); without it the dashboard asks for no credentials. /metrics and the health probes never do'),
  })
  .describe('the HTTP operations server: the dashboard, Prometheus metrics and health probes')

/** The `http.host` values that keep the dashboard on this machine. */
export const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost']

// ---------------------------------------------------------------------------------------------
// Bridges

const BRIDGE_URL = /^(mqtts?|wss?):\/\//i

/** Why `value` is not a bridge URL, or undefined. */
export function bridgeUrlProblem(value: string): string | undefined {
  if (!BRIDGE_URL.test(value)) return 'not an mqtt://, mqtts://, ws:// or wss:// URL'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'not a valid URL'
  }
  if (url.hostname === '') return 'no host'
  return undefined
}

/** Issues of `checkTopic` (`topics[0].localPrefix "a/#" may not ...`) as a path and a message. */
function topicIssue(message: string): { path: string[]; message: string } {
  const rest = message.replace(/^topics\[\d+\]/, '')
  const key = /^\.(\w+) (.*)$/s.exec(rest)
  if (key !== null) return { path: [key[1] as string], message: key[2] as string }
  return { path: [], message: rest.replace(/^: /, '') }
}

const bridgeTopicSchema = z
  .strictObject({
    filter: z.string({ error: expected('a string') }).describe("the topic filter (wildcards allowed); '' with both prefixes maps one topic to another"),
    direction: choice(['in', 'out', 'both']).optional().describe('out: from here to the remote (default); in: from the remote; both'),
    qos: z.literal([0, 1, 2], { error: expected('0, 1 or 2') }).optional().describe('QoS of the subscriptions on both sides and the most a message crosses with (default 1)'),
    localPrefix: z.string({ error: expected('a string') }).optional().describe('prepended to the filter here; no wildcards'),
    remotePrefix: z.string({ error: expected('a string') }).optional().describe('prepended to the filter on the remote; no wildcards'),
  })
  .superRefine((topic, ctx) => {
    try {
      checkTopic(topic as BridgeTopic, 0)
    } catch (error) {
      const issue = topicIssue(error instanceof Error ? error.message : String(error))
      ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message })
    }
  })
  .describe("a bridged topic, as mosquitto.conf's topic <filter> [in|out|both] [qos] [local-prefix] [remote-prefix]")

const bridgeTlsSchema = z
  .strictObject({
    caFile: z
      .union([text(), z.array(text())], { error: expected('a file name or a list of them') })
      .optional()
      .describe("certificate authorities (PEM) the remote's certificate must chain to (default: Node's); read at start"),
    certFile: text().optional().describe('a client certificate (PEM), for remotes that ask for one; read at start'),
    keyFile: text().optional().describe('its private key (PEM); read at start'),
    passphrase: secret().optional().describe('the passphrase of an encrypted key'),
    rejectUnauthorized: bool().optional().describe("refuse a remote whose certificate is not valid for its host name (default true; false is not for production)"),
    servername: text().optional().describe("the TLS server name (SNI), when it differs from the URL's host"),
    alpn: z.array(text(), { error: expected('a list of protocol names') }).optional().describe("ALPN protocols to offer (x-amzn-mqtt-ca for AWS IoT on port 443)"),
  })
  .superRefine((tls, ctx) => {
    if (tls.certFile !== undefined && tls.keyFile === undefined) ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'missing: certFile needs its keyFile' })
    if (tls.keyFile !== undefined && tls.certFile === undefined) ctx.addIssue({ code: 'custom', path: ['certFile'], message: 'missing: keyFile needs its certFile' })
  })
  .describe('TLS toward an mqtts:// or wss:// remote; the files are read at start')

const bridgeSchema = z
  .strictObject({
    name: text()
      .refine((name) => !/[/+#]/.test(name) && !name.includes('\u0000'), { error: expected("a name without '/', '+' or '#'") })
      .describe('unique; names the state topic $SYS/broker/connection/<name>/state and the local session bridge:<name>'),
    url: text()
      .superRefine((value, ctx) => {
        const why = bridgeUrlProblem(value)
        if (why !== undefined) ctx.addIssue({ code: 'custom', message: `expected mqtt://HOST[:PORT], mqtts://, ws:// or wss://..., got ${show(value)} (${why})` })
      })
      .describe('the remote broker: mqtt://, mqtts://, ws:// or wss:// URL'),
    topics: z
      .array(bridgeTopicSchema, { error: expected('a list of topics') })
      .min(1, { error: 'expected at least one topic' })
      .describe('the topics bridged; a message crosses by the first entry of its direction that matches'),
    clientId: text().optional().describe('the client identifier on the remote (default culex-bridge-<name>)'),
    username: text().optional().describe('the user name on the remote'),
    password: secret().optional().describe('the password on the remote'),
    tls: bridgeTlsSchema.optional(),
    protocolVersion: z
      .literal([4, 5], { error: expected('4 (MQTT 3.1.1) or 5') })
      .optional()
      .describe('MQTT version spoken to the remote: 4 (3.1.1, default) or 5'),
    tryPrivate: bool().optional().describe("3.1.1: connect with the bridge flag, as Mosquitto's try_private (default true)"),
    forwardBridged: bool()
      .optional()
      .describe('false: messages that came from another broker do not go to this remote, and what it sends does not go on to incoming bridges; set it when the remote also bridges to Culex on overlapping topics (default true)'),
    cleanSession: bool().optional().describe('start the remote session clean (default false)'),
    keepAlive: int(0, 65_535).optional().describe('keep alive toward the remote, in seconds (default 60)'),
    reconnectPeriod: int(0, MAX_TIMER_MS).optional().describe('first pause before reconnecting, in ms; doubles at each failure (default 1000)'),
    maxReconnectPeriod: int(0, MAX_TIMER_MS).optional().describe('the longest pause between attempts, in ms (default 30000)'),
    connectTimeout: int(1, MAX_TIMER_MS).optional().describe("how long to wait for the remote's CONNACK, in ms (default 30000)"),
  })
  .superRefine((bridge, ctx) => {
    if (bridge.tls !== undefined && typeof bridge.url === 'string' && /^(mqtt|ws):/i.test(bridge.url)) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'applies to mqtts:// and wss:// URLs only' })
    }
  })
  .describe('an outgoing bridge to another MQTT broker (needs the mqtt package)')

const bridgesSchema = z
  .array(bridgeSchema, { error: expected('a list of bridges') })
  .superRefine((bridges, ctx) => {
    const seen = new Map<string, number>()
    bridges.forEach((bridge, i) => {
      const first = seen.get(bridge.name)
      if (first === undefined) seen.set(bridge.name, i)
      else ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `${show(bridge.name)} is also the name of bridges[${first}]` })
    })
  })
  .describe('outgoing bridges to other MQTT brokers, started once the listeners are (see docs/bridges.md); not reloaded on SIGHUP')

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const

const logSchema = z
  .strictObject({
    level: choice(LOG_LEVELS).default('info').describe("the broker's log lines at this level and above"),
    format: choice(['text', 'json']).default('text').describe('text: LEVEL message key=value; json: one JSON object per line'),
  })
  .describe("the broker's log lines, on stdout")

const drainSchema = z
  .strictObject({
    timeoutMs: int(0, MAX_TIMER_MS).default(25_000).describe('how long SIGTERM waits for clients to leave and in-flight QoS 1/2 messages to be acknowledged'),
    spreadMs: int(0, MAX_TIMER_MS).default(0).describe('disconnects spread over this time, so that clients do not all reconnect elsewhere at once'),
    serverReference: text().optional().describe('MQTT 5 clients are told to use this server instead (DISCONNECT 0x9C/0x9D)'),
    temporary: bool().optional().describe('with serverReference: 0x9C use another server (true, the default) or 0x9D server moved (false)'),
  })
  .describe('what SIGTERM and SIGINT do: a graceful drain')

// ---------------------------------------------------------------------------------------------
// The file

/** The listener a configuration without one gets. */
export const DEFAULT_LISTENERS = [{ type: 'tcp', port: 1883 }] as const

const sections = {
  $schema: z.string().optional().describe('the JSON Schema of this file, for editors; ignored'),
  listeners: z
    .array(listenerSchema, { error: expected('a list of listeners') })
    .min(1, { error: 'expected at least one listener' })
    .prefault([...DEFAULT_LISTENERS])
    .describe('where clients connect (default: tcp on port 1883, all addresses)'),
  persistence: persistenceSchema.optional(),
  cluster: clusterSchema.optional(),
  limits: limitsSchema.prefault({}),
  capabilities: capabilitiesSchema.prefault({}),
  sys: sysSchema.prefault({}),
  auth: authSchema.optional(),
  protection: protectionSchema.optional(),
  http: httpSchema.optional(),
  bridges: bridgesSchema.optional(),
  log: logSchema.prefault({}),
  drain: drainSchema.prefault({}),
}

/** The configuration: `culex.yaml`, `culex.json`, `CULEX_*` variables and flags all fill it in. */
export const configSchema = z
  .strictObject(sections)
  .superRefine((config, ctx) => {
    // Defensive: this runs on a partly invalid configuration too.
    if (config.cluster !== undefined && config.persistence !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['persistence'], message: 'not with cluster: the cluster keeps sessions and retained messages in its own Redis' })
    }
    const listeners: unknown[] = Array.isArray(config.listeners) ? config.listeners : []
    // Ports (and socket files) two listeners, or a listener and the HTTP server, would both bind.
    const bound: Array<{ port: number | string; host: unknown; owner: string }> = []
    const claim = (port: number | string, host: unknown, path: (string | number)[], what: string): void => {
      const clash = bound.find((b) => b.port === port && (b.host === host || b.host === undefined || host === undefined))
      if (clash !== undefined) ctx.addIssue({ code: 'custom', path, message: `${what} is also used by ${clash.owner}` })
      else bound.push({ port, host, owner: formatPath(path.slice(0, -1)) })
    }
    listeners.forEach((item, i) => {
      const l = item as { type?: unknown; port?: unknown; host?: unknown; path?: unknown; proxyProtocol?: unknown; trustedProxies?: unknown }
      if (l.type === 'unix' && typeof l.path === 'string') claim(l.path, undefined, ['listeners', i, 'path'], `socket ${l.path}`)
      if (typeof l.port === 'number' && l.port !== 0) claim(l.port, l.host, ['listeners', i, 'port'], `port ${l.port}`)
      if ((l.type === 'tcp' || l.type === 'tls') && l.proxyProtocol !== true && Array.isArray(l.trustedProxies)) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'trustedProxies'], message: 'applies with proxyProtocol: true only' })
      }
    })
    const http = config.http
    if (http !== undefined && typeof http.port === 'number' && http.port !== 0) claim(http.port, http.host, ['http', 'port'], `port ${http.port}`)
    if (http !== undefined && Array.isArray(http.admins) && config.auth?.passwordFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['http', 'admins'], message: 'admins are checked against auth.passwordFile, and there is none' })
    }
    if (http !== undefined && http.port !== undefined && http.dashboard !== false && http.admins === undefined && typeof http.host === 'string' && !LOOPBACK_HOSTS.includes(http.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['http', 'host'],
        message: `the dashboard would be open to anyone who reaches ${http.host}: set http.admins (users of auth.passwordFile) or http.dashboard: false`,
      })
    }
  })

/** The configuration as written (every key optional). */
export type CulexConfigInput = z.input<typeof configSchema>
/** The configuration with its defaults filled in. */
export type CulexConfig = z.output<typeof configSchema>
export type ListenerConfig = CulexConfig['listeners'][number]
export type TlsConfig = z.output<typeof tlsSchema>
export type PersistenceConfig = NonNullable<CulexConfig['persistence']>
export type AuthConfig = NonNullable<CulexConfig['auth']>
export type BridgeConfig = NonNullable<CulexConfig['bridges']>[number]
export type HttpConfig = NonNullable<CulexConfig['http']>

/** A path in the configuration: keys and list indexes. */
export type Path = ReadonlyArray<string | number>

/** `['listeners', 1, 'port']` -> `listeners[1].port` */
export function formatPath(path: Path): string {
  let out = ''
  for (const segment of path) out += typeof segment === 'number' ? `[${segment}]` : out === '' ? segment : `.${segment}`
  return out
}
