/**
 * Topic mapping across a bridge, as Mosquitto's bridge does it (bridge_topic.c): a message crosses
 * by the first topic entry of its direction whose filter on its side matches it; the prefix of the
 * side it leaves is stripped (when the topic starts with it) and the prefix of the side it enters
 * is added.
 */
import { topicMatches } from '../protocol/topics.js'
import type { BridgeRoute } from './options.js'

/** Where a message crossing the bridge goes: the topic on the other side and the most QoS it may keep. */
export interface Crossing {
  readonly topic: string
  readonly qos: BridgeRoute['qos']
}

function remap(topic: string, from: string, to: string): string {
  const rest = from !== '' && topic.startsWith(from) ? topic.slice(from.length) : topic
  return to + rest
}

/** A local topic going out to the remote broker, or undefined if no out/both entry matches it. */
export function mapOut(routes: readonly BridgeRoute[], topic: string): Crossing | undefined {
  for (const route of routes) {
    if (route.direction === 'in' || !topicMatches(route.localFilter, topic)) continue
    return { topic: remap(topic, route.localPrefix, route.remotePrefix), qos: route.qos }
  }
  return undefined
}

/** A remote topic coming in to Culex, or undefined if no in/both entry matches it. */
export function mapIn(routes: readonly BridgeRoute[], topic: string): Crossing | undefined {
  for (const route of routes) {
    if (route.direction === 'out' || !topicMatches(route.remoteFilter, topic)) continue
    return { topic: remap(topic, route.remotePrefix, route.localPrefix), qos: route.qos }
  }
  return undefined
}
