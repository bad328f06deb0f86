/**
 * The options of `broker.bridge` and their checks. No MQTT.js here: this module is loaded with the
 * broker, the bridge itself (and MQTT.js) only when a bridge is created.
 */
import type { SecureContextOptions } from 'node:tls'
import type { QoS } from '../protocol/packets.js'
import { hasWildcard, isValidTopicFilter } from '../protocol/topics.js'

/** Which way a bridged topic flows: `out` from Culex to the remote broker, `in` from it, `both`. */
export type BridgeDirection = 'in' | 'out' | 'both'

/**
 * One bridged topic, as Mosquitto's `topic <pattern> [in|out|both] [qos] [local-prefix] [remote-prefix]`.
 * Locally the topic is `localPrefix + filter`, remotely `remotePrefix + filter`; a message crossing
 * the bridge loses the prefix of the side it comes from and gains the prefix of the side it goes to.
 */
export interface BridgeTopic {
  /** The topic filter (wildcards allowed). May be `''` when both prefixes are given: the prefixes are then whole topics. */
  filter: string
  /** Default `'out'`, as in Mosquitto. */
  direction?: BridgeDirection
  /**
   * The QoS of the subscriptions on both sides and the most a message is forwarded with. Default 1
   * (Mosquitto's default is 0): QoS 1 or 2 is what keeps outgoing messages while the remote is down.
   */
  qos?: QoS
  /** Prepended to the filter on the Culex side. No wildcards. Default `''`. */
  localPrefix?: string
  /** Prepended to the filter on the remote side. No wildcards. Default `''`. */
  remotePrefix?: string
}

/** TLS options for an `mqtts://` or `wss://` remote, as Node's `tls.connect` takes them. */
export interface BridgeTlsOptions extends SecureContextOptions {
  /** Default true: the remote's certificate must be valid for its host name. */
  rejectUnauthorized?: boolean
  /** The SNI server name, when it differs from the URL's host. */
  servername?: string
  /** ALPN protocols to offer (e.g. `['x-amzn-mqtt-ca']` for AWS IoT on port 443). */
  ALPNProtocols?: string[]
}

/** Options of `broker.bridge`: a connection from this broker to a remote MQTT broker. */
export interface BridgeOptions {
  /** The bridge's name: unique per broker; part of the state topic and of the local client id. */
  name: string
  /** The remote broker: `mqtt://`, `mqtts://`, `ws://` or `wss://` URL. */
  url: string
  /** The topics bridged, checked in order: a message crosses by the first entry that matches it. */
  topics: BridgeTopic[]
  /** The client identifier on the remote broker. Default `culex-bridge-<name>`. */
  clientId?: string
  username?: string
  password?: string | Buffer
  /** TLS options for `mqtts://` and `wss://`. */
  tls?: BridgeTlsOptions
  /** MQTT version spoken to the remote: 4 (3.1.1, default) or 5. */
  protocolVersion?: 4 | 5
  /**
   * 3.1.1 only: connect with the bridge flag (protocol level 0x84), so a remote that knows it
   * (Mosquitto, Culex) does not send the bridge's own messages back. Default true; turn it off for
   * remotes that refuse it (some cloud brokers).
   */
  tryPrivate?: boolean
  /**
   * Whether this bridge relays messages to and from other brokers' bridges. Default true, so
   * chains work (a site's Mosquitto → Culex → the cloud). With false:
   * - `out` messages that reached Culex from another broker do not go to this bridge's remote:
   *   those published by an incoming bridge (a client that connected with the bridge flag, such as
   *   a Mosquitto bridge) or by any outgoing bridge's local client (what came in from its remote);
   * - messages this bridge brings in (`in`) do not go to incoming bridges (the remote's own bridge
   *   to Culex may be one of them).
   *
   * Set false when the remote also runs a bridge to Culex on overlapping topics (or for any
   * topology with two paths between brokers): a message then cannot loop, provided the remote's
   * bridge identifies itself with the bridge flag (MQTT 3.1.1 with Mosquitto's `try_private true`,
   * the default, or a Culex bridge with `protocolVersion: 4` and `tryPrivate`). An MQTT 5 bridge
   * cannot say it is one: its messages look like any client's. Messages published on Culex by its
   * own clients (and by the host) are forwarded either way.
   */
  forwardBridged?: boolean
  /** Start the remote session clean. Default false: the remote keeps the bridge's subscriptions and queued messages. */
  cleanSession?: boolean
  /** Keep alive toward the remote, in seconds. Default 60. */
  keepAlive?: number
  /** First pause before reconnecting to the remote, in ms; it doubles at each failure (with jitter) up to `maxReconnectPeriod`. Default 1,000. */
  reconnectPeriod?: number
  /** The longest pause between reconnection attempts, in ms. Default 30,000. */
  maxReconnectPeriod?: number
  /** How long to wait for the remote's CONNACK, in ms. Default 30,000. */
  connectTimeout?: number
}

/**
 * The pause before reconnection attempt `attempts + 1`, in ms: `period` doubled at each failed
 * attempt up to `max`, then drawn between 50 % and 100 % of that (jitter), so that many sites cut
 * off together do not come back in step. `random` returns a number in [0, 1).
 */
export function reconnectDelay(attempts: number, period: number, max: number, random: () => number = Math.random): number {
  const full = Math.min(max, period * 2 ** Math.min(attempts, 30))
  return Math.max(1, Math.round(full * (0.5 + random() * 0.5)))
}

/**
 * `url` with the password of its user info as `***`, for lists and logs. Fails closed: a URL that
 * `new URL` cannot parse (MQTT.js's parser is more lenient) has all of its user info masked.
 */
export function maskUrlPassword(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password === '') return url
    parsed.password = '***'
    return parsed.toString()
  } catch {
    // Everything between the scheme and the last '@' before the path may be user info.
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?]*@/i, '$1***@')
  }
}

/** A running bridge as `broker.bridges` lists it. */
export interface BridgeSummary {
  /** The bridge's name. */
  readonly name: string
  /** The remote broker's URL, with a password in it shown as `***`. */
  readonly url: string
  /** Whether the remote broker is connected now. */
  readonly connected: boolean
  /** The client identifier of the bridge's local session on Culex (the outbox): `bridge:<name>`. */
  readonly localClientId: string
}

/** A running bridge, as `broker.bridge` returns it. */
export interface BridgeHandle {
  /** The bridge's name. */
  readonly name: string
  /** The remote broker's URL, as given. */
  readonly url: string
  /** Whether the remote broker is connected now. */
  readonly connected: boolean
  /** The client identifier of the bridge's local session on Culex (the outbox): `bridge:<name>`. */
  readonly localClientId: string
  /**
   * Stops the bridge: both connections close without acknowledging anything more, so messages
   * not yet acknowledged by the remote stay in the local session for the next bridge of that name.
   */
  close(): Promise<void>
}

/** A bridged topic with its defaults filled in and its two sides computed. */
export interface BridgeRoute {
  readonly direction: BridgeDirection
  readonly qos: QoS
  readonly localPrefix: string
  readonly remotePrefix: string
  /** `localPrefix + filter`: what the bridge subscribes to on Culex (out, both). */
  readonly localFilter: string
  /** `remotePrefix + filter`: what the bridge subscribes to on the remote (in, both). */
  readonly remoteFilter: string
}

/** Bridge options with defaults filled in. */
export interface CheckedBridgeOptions {
  readonly name: string
  readonly url: string
  readonly routes: readonly BridgeRoute[]
  readonly clientId: string
  readonly username: string | undefined
  readonly password: string | Buffer | undefined
  readonly tls: BridgeTlsOptions | undefined
  readonly protocolVersion: 4 | 5
  readonly tryPrivate: boolean
  readonly forwardBridged: boolean
  readonly cleanSession: boolean
  readonly keepAlive: number
  readonly reconnectPeriod: number
  readonly maxReconnectPeriod: number
  readonly connectTimeout: number
}

function checkPrefix(prefix: unknown, what: string): string {
  if (prefix === undefined) return ''
  if (typeof prefix !== 'string') throw new TypeError(`${what} must be a string`)
  if (hasWildcard(prefix) || prefix.includes('\u0000')) throw new TypeError(`${what} ${JSON.stringify(prefix)} may not contain wildcards`)
  return prefix
}

/** One topic entry, checked as Mosquitto checks a `topic` line. */
export function checkTopic(topic: BridgeTopic, index: number): BridgeRoute {
  const at = `topics[${index}]`
  if (typeof topic !== 'object' || topic === null) throw new TypeError(`${at} must be an object`)
  const direction = topic.direction ?? 'out'
  if (direction !== 'in' && direction !== 'out' && direction !== 'both') throw new TypeError(`${at}.direction must be 'in', 'out' or 'both'`)
  const qos = topic.qos ?? 1
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new TypeError(`${at}.qos must be 0, 1 or 2`)
  const localPrefix = checkPrefix(topic.localPrefix, `${at}.localPrefix`)
  const remotePrefix = checkPrefix(topic.remotePrefix, `${at}.remotePrefix`)
  const filter = topic.filter
  if (typeof filter !== 'string') throw new TypeError(`${at}.filter must be a string`)
  // As Mosquitto: an empty pattern needs both prefixes, which are then the whole topics.
  if (filter === '' && (localPrefix === '' || remotePrefix === '')) {
    throw new TypeError(`${at}: an empty filter needs both localPrefix and remotePrefix`)
  }
  const localFilter = localPrefix + filter
  const remoteFilter = remotePrefix + filter
  if (!isValidTopicFilter(localFilter)) throw new TypeError(`${at}: ${JSON.stringify(localFilter)} is not a valid topic filter`)
  if (!isValidTopicFilter(remoteFilter)) throw new TypeError(`${at}: ${JSON.stringify(remoteFilter)} is not a valid topic filter`)
  return { direction, qos, localPrefix, remotePrefix, localFilter, remoteFilter }
}

function positive(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`${what} must be a number ≥ 0`)
  return v
}

/** Checks `broker.bridge` options and fills in the defaults; throws a TypeError or RangeError. */
export function checkBridgeOptions(options: BridgeOptions): CheckedBridgeOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('bridge options must be an object')
  const { name, url } = options
  if (typeof name !== 'string' || name === '' || /[/+#]/.test(name) || name.includes('\u0000')) {
    throw new TypeError(`bridge name ${JSON.stringify(name)} must be a non-empty string without '/', '+', '#'`)
  }
  if (typeof url !== 'string' || !/^(mqtts?|wss?):\/\//.test(url)) throw new TypeError(`bridge url ${JSON.stringify(url)} must be an mqtt://, mqtts://, ws:// or wss:// URL`)
  if (!Array.isArray(options.topics) || options.topics.length === 0) throw new TypeError('bridge topics must be a non-empty array')
  const protocolVersion = options.protocolVersion ?? 4
  if (protocolVersion !== 4 && protocolVersion !== 5) throw new TypeError('bridge protocolVersion must be 4 or 5')
  const reconnectPeriod = positive(options.reconnectPeriod, 1_000, 'reconnectPeriod')
  return {
    name,
    url,
    routes: options.topics.map(checkTopic),
    clientId: options.clientId ?? `culex-bridge-${name}`,
    username: options.username,
    password: options.password,
    tls: options.tls,
    protocolVersion,
    tryPrivate: options.tryPrivate ?? true,
    forwardBridged: options.forwardBridged ?? true,
    cleanSession: options.cleanSession ?? false,
    keepAlive: positive(options.keepAlive, 60, 'keepAlive'),
    reconnectPeriod: Math.max(reconnectPeriod, 10),
    maxReconnectPeriod: Math.max(positive(options.maxReconnectPeriod, 30_000, 'maxReconnectPeriod'), reconnectPeriod),
    connectTimeout: positive(options.connectTimeout, 30_000, 'connectTimeout'),
  }
}
