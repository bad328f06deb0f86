import { DEFAULT_LIMITS, type Limits } from '../options.js'
import { UsageError } from './errors.js'

/** One command-line flag per limit, derived from the keys of DEFAULT_LIMITS: a new limit gets its flag without a change here. */
export interface LimitFlag {
  /** The key in `Limits`, e.g. `maxQueued`. */
  key: keyof Limits
  /** The flag without its dashes, e.g. `max-queued`. */
  name: string
  default: number
}

/** `maxQueuedBytes` -> `max-queued-bytes`, `connectTimeoutMs` -> `connect-timeout-ms`. */
export function kebabCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

export const LIMIT_FLAGS: readonly LimitFlag[] = (Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>).map((key) => ({
  key,
  name: kebabCase(key),
  default: DEFAULT_LIMITS[key],
}))

/** A few words per limit for the usage; a limit missing here still has its flag, listed without them. */
export const LIMIT_HELP: Partial<Record<keyof Limits, string>> = {
  maxConnections: 'open connections at once',
  maxPacketSize: 'largest packet accepted, in bytes',
  maxKeepAlive: 'longest keep alive a client may ask for, in seconds',
  connectTimeoutMs: 'time to send CONNECT, in ms',
  maxInflight: 'unacknowledged outgoing QoS 1/2 messages per client',
  maxQueued: 'messages queued per session; more are dropped',
  maxQueuedBytes: 'bytes queued per session; 0: no limit',
  persistentSessionExpiry: 'seconds a 3.1.1 persistent session outlives its connection',
  maxSubscriptionsPerClient: 'subscriptions one client may hold',
  maxWriteBuffer: 'unwritten bytes per client before QoS 0 is dropped',
  receiveMaximum: 'MQTT 5 Receive Maximum advertised',
  topicAliasMaximum: 'MQTT 5 Topic Alias Maximum; 0: no aliases',
  maxPublishRate: 'PUBLISH packets per second per client; 0: no limit',
  maxSessionExpiryInterval: 'longest MQTT 5 session expiry granted, in seconds',
}

const NEVER = 0xffffffff

/** The usage lines of the limit flags, with their defaults. */
export function limitsUsage(): string {
  const left = LIMIT_FLAGS.map((f) => `  --${f.name} <n>`)
  const width = Math.max(...left.map((l) => l.length)) + 2
  return LIMIT_FLAGS.map((f, i) => {
    const help = LIMIT_HELP[f.key]
    const def = f.default === NEVER ? `${f.default}, never` : String(f.default)
    return `${(left[i] as string).padEnd(width)}${help === undefined ? '' : `${help} `}(default ${def})`
  }).join('\n')
}

/** Parses the value of a limit flag: a non-negative integer, in decimal or 0x hexadecimal. */
export function parseLimitValue(flag: string, raw: string): number {
  const value = /^\d+$/.test(raw) ? Number(raw) : /^0x[0-9a-f]+$/i.test(raw) ? Number.parseInt(raw.slice(2), 16) : Number.NaN
  if (!Number.isSafeInteger(value)) throw new UsageError(`--${flag} expects a non-negative integer, got ${JSON.stringify(raw)}`)
  return value
}

const FLAG_BY_KEY = new Map<string, string>(LIMIT_FLAGS.map((f) => [f.key, f.name]))

/**
 * Names the flags in a broker error about its limits: "limits.maxInflight must be an integer from
 * 1 to 65535, got 0" becomes "--max-inflight must be ...". The ranges live in the broker, once.
 */
export function renameLimitsInMessage(message: string): string {
  return message.replace(/\blimits\.(\w+)/g, (whole, key: string) => {
    const flag = FLAG_BY_KEY.get(key)
    return flag === undefined ? whole : `--${flag}`
  })
}
