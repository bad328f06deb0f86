import { isPromise } from '../../hooks/promise.js'
import { log } from '../../logging.js'
import type { QoS, SubscribePacket, Subscription } from '../../protocol/packets.js'
import { SUBACK_FAILURE } from '../../protocol/reason-codes.js'
import { isValidTopicFilter } from '../../protocol/topics.js'
import type { Connection } from '../connection.js'

type Decision = boolean | QoS

export function handleSubscribe(connection: Connection, packet: SubscribePacket): void | Promise<void> {
  if (log.packet.enabled) {
    log.packet('Received SUBSCRIBE from %s: %s', connection.id, packet.subscriptions.map((s) => `${s.topicFilter} (QoS ${s.qos})`).join(', '))
  }
  const authorize = connection.broker.authorizeSubscribe
  const decisions: Array<Decision | Promise<Decision>> = packet.subscriptions.map((s) => {
    if (!isValidTopicFilter(s.topicFilter)) return false
    return authorize === undefined ? true : authorize(connection, s)
  })
  if (decisions.some(isPromise)) return Promise.all(decisions).then((d) => finish(connection, packet, d))
  finish(connection, packet, decisions as Decision[])
}

function grantedQos(requested: QoS, decision: Decision): number {
  if (decision === true) return requested
  // Anything but true or a QoS refuses (a JavaScript host returning 0x80 means no, too).
  if (decision !== 0 && decision !== 1 && decision !== 2) return SUBACK_FAILURE
  return decision < requested ? decision : requested
}

function finish(connection: Connection, packet: SubscribePacket, decisions: Decision[]): void {
  const session = connection.session
  if (connection.state === 'closed' || session === null) return
  const broker = connection.broker
  const granted: Subscription[] = []
  const reasonCodes = packet.subscriptions.map((s, i) => {
    const code = grantedQos(s.qos, decisions[i] as Decision)
    if (code === SUBACK_FAILURE) {
      log.auth('Subscription of %s to %j refused', connection.id, s.topicFilter)
      return code
    }
    if (!session.subscriptions.has(s.topicFilter) && session.subscriptions.size >= broker.limits.maxSubscriptionsPerClient) {
      log.client('Subscription of %s to %j refused: maxSubscriptionsPerClient (%d) reached', connection.id, s.topicFilter, broker.limits.maxSubscriptionsPerClient)
      return SUBACK_FAILURE
    }
    const subscription: Subscription = { ...s, qos: code as QoS }
    // [MQTT-3.8.4-3] a subscription to an existing filter replaces it
    broker.subscribe(session, subscription)
    granted.push(subscription)
    return code
  })
  // [MQTT-3.8.4-1] [MQTT-3.8.4-5] one SUBACK return code per requested filter, in order
  connection.send({ type: 'suback', packetId: packet.packetId, reasonCodes })
  if (log.packet.enabled) log.packet('Sending SUBACK to %s: %j', connection.id, reasonCodes)
  broker.sessionChanged(session)
  if (granted.length > 0) broker.emit('subscribe', granted, connection)
  // [MQTT-3.3.1-6] retained messages follow the SUBACK; a filter repeated in one packet is one
  // subscription (the last one replaced the others), so its retained messages go out once.
  const sent = new Set<string>()
  for (let i = granted.length - 1; i >= 0; i--) {
    const subscription = granted[i] as Subscription
    if (sent.has(subscription.topicFilter)) continue
    sent.add(subscription.topicFilter)
    connection.flow.addWork(broker.sendRetained(session, subscription))
  }
}
