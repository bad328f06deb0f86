import type { Properties, Subscription } from '../../protocol/packets.js'

/** The properties that hold binary data: JSON carries them as base64 and they come back as Buffers. */
const BINARY_PROPERTIES = ['correlationData', 'authenticationData'] as const

/**
 * MQTT 5 properties as compact JSON text (null when absent). JSON keeps `userProperties` pairs in
 * order; the binary ones are base64 rather than JSON's default array of byte numbers.
 */
export function encodeProperties(properties: Properties | undefined): string | null {
  if (properties === undefined) return null
  let plain: Record<string, unknown> = properties as Record<string, unknown>
  for (const key of BINARY_PROPERTIES) {
    const value = properties[key]
    if (value === undefined) continue
    // Copy only when needed: the broker's own object is never modified.
    if (plain === properties) plain = { ...properties }
    plain[key] = value.toString('base64')
  }
  return JSON.stringify(plain)
}

/** The inverse of `encodeProperties`. */
export function decodeProperties(json: string | null): Properties | undefined {
  if (json === null) return undefined
  const properties = JSON.parse(json) as Record<string, unknown>
  for (const key of BINARY_PROPERTIES) {
    const value = properties[key]
    if (typeof value === 'string') properties[key] = Buffer.from(value, 'base64')
  }
  return properties as Properties
}

/** A subscription's options as JSON; its topic filter has a column of its own (the key). */
export function encodeSubscriptionOptions(subscription: Subscription): string {
  const { topicFilter: _key, ...options } = subscription
  return JSON.stringify(options)
}

/** The inverse of `encodeSubscriptionOptions`. */
export function decodeSubscription(topicFilter: string, options: string): Subscription {
  return { topicFilter, ...(JSON.parse(options) as Omit<Subscription, 'topicFilter'>) }
}
