/** Topic name and topic filter rules of section 4.7. */

/** The most UTF-8 bytes a topic name or filter may encode to [MQTT-4.7.3-3]. */
const MAX_TOPIC_BYTES = 65535

/**
 * Whether the code unit at `i` (a UTF-16 surrogate) is half of a well-formed pair. A lone
 * surrogate has no UTF-8 encoding: 3.1.1 [MQTT-1.5.3-1], 5.0 [MQTT-1.5.4-1].
 */
function isPairedSurrogate(s: string, i: number, c: number): boolean {
  if (c <= 0xdbff) {
    const next = s.charCodeAt(i + 1)
    return next >= 0xdc00 && next <= 0xdfff
  }
  const prev = s.charCodeAt(i - 1)
  return prev >= 0xd800 && prev <= 0xdbff
}

/** At most 65,535 bytes once UTF-8 encoded [MQTT-4.7.3-3]; each UTF-16 code unit takes at most 3 bytes. */
function fitsLength(s: string): boolean {
  return s.length * 3 <= MAX_TOPIC_BYTES || Buffer.byteLength(s, 'utf8') <= MAX_TOPIC_BYTES
}

/**
 * A topic name a PUBLISH may carry: at least one character [MQTT-4.7.3-1], no wildcards
 * [MQTT-3.3.2-2], no U+0000 [MQTT-4.7.3-2], no lone surrogate, at most 65,535 UTF-8 bytes
 * [MQTT-4.7.3-3]. The decoder already guarantees the last three for topics read off the wire;
 * they matter for topics given through the API.
 */
export function isValidTopicName(topic: string): boolean {
  const n = topic.length
  if (n === 0) return false
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i)
    if (c === 0x23 /* # */ || c === 0x2b /* + */ || c === 0) return false
    if (c >= 0xd800 && c <= 0xdfff && !isPairedSurrogate(topic, i, c)) return false
  }
  return fitsLength(topic)
}

/**
 * A topic filter a SUBSCRIBE may carry: non-empty [MQTT-4.7.3-1]; '#' only as the whole last
 * level [MQTT-4.7.1-2]; '+' only as a whole level [MQTT-4.7.1-3]; no U+0000 [MQTT-4.7.3-2], no
 * lone surrogate, at most 65,535 UTF-8 bytes [MQTT-4.7.3-3].
 */
export function isValidTopicFilter(filter: string): boolean {
  const n = filter.length
  if (n === 0) return false
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i)
    if (c === 0x2b /* + */) {
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || (i < n - 1 && filter.charCodeAt(i + 1) !== 0x2f)) return false
    } else if (c === 0x23 /* # */) {
      if (i !== n - 1 || (i > 0 && filter.charCodeAt(i - 1) !== 0x2f)) return false
    } else if (c === 0) {
      return false
    } else if (c >= 0xd800 && c <= 0xdfff && !isPairedSurrogate(filter, i, c)) {
      return false
    }
  }
  return fitsLength(filter)
}

/** Whether a filter holds a wildcard. */
export function hasWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#')
}

/**
 * Whether `topic` matches `filter`. Used off the hot path (retained messages, tests); routing
 * goes through the subscription trie. Filters starting with a wildcard do not match topics
 * starting with '$' [MQTT-4.7.2-1].
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}

/** Whether a topic is under `$SYS/`, where the broker publishes about itself. */
export function isSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 && (topic.startsWith('$SYS/') || topic === '$SYS')
}

/**
 * The one $SYS topic a client may write: its own bridge state, `$SYS/broker/connection/<client
 * id>/state`, which a Mosquitto bridge (`notifications true`, its default) sets as its will and
 * publishes on connecting, as Mosquitto allows it.
 */
export function isOwnBridgeState(topic: string, clientId: string): boolean {
  // A client id with '/', '+' or '#' would reach other topics, or none.
  if (/[/+#]/.test(clientId)) return false
  return topic === `$SYS/broker/connection/${clientId}/state`
}
