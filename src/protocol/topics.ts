/** Topic name and topic filter rules of section 4.7. */

/**
 * A topic name a PUBLISH may carry: at least one character [MQTT-4.7.3-1], no wildcards
 * [MQTT-3.3.2-2]. UTF-8 validity and U+0000 are checked by the decoder.
 */
export function isValidTopicName(topic: string): boolean {
  if (topic.length === 0) return false
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i)
    if (c === 0x23 /* # */ || c === 0x2b /* + */) return false
  }
  return true
}

/**
 * A topic filter a SUBSCRIBE may carry: non-empty [MQTT-4.7.3-1]; '#' only as the whole last
 * level [MQTT-4.7.1-2]; '+' only as a whole level [MQTT-4.7.1-3].
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
    }
  }
  return true
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
