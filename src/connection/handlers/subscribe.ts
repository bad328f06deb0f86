import { hookThrew } from '../../hooks/errors.js'
import { isPromise } from '../../hooks/promise.js'
import type { AuthorizeSubscribeHook } from '../../hooks/types.js'
import { log } from '../../logging.js'
import type { QoS, SubscribePacket, Subscription } from '../../protocol/packets.js'
import { ReasonCode, SUBACK_FAILURE } from '../../protocol/reason-codes.js'
import { hasWildcard, isValidTopicFilter } from '../../protocol/topics.js'
import { parseSharedFilter } from '../../routing/shared-group.js'
import type { Connection } from '../connection.js'
import { problemProperties } from '../problem.js'

/** A hook's answer, or a SUBACK failure code decided before the hook (0x80 and up). */
type Decision = boolean | number | { refuse: number }

function isRefusal(decision: unknown): decision is { refuse: number } {
  return typeof decision === 'object' && decision !== null && typeof (decision as { refuse?: unknown }).refuse === 'number'
}

export function handleSubscribe(connection: Connection, packet: SubscribePacket): void | Promise<void> {
  if (log.packet.enabled) {
    log.packet('Received SUBSCRIBE from %s: %s', connection.id, packet.subscriptions.map((s) => `${s.topicFilter} (QoS ${s.qos})`).join(', '))
  }
  const v5 = connection.protocolVersion === 5
  const { capabilities } = connection.broker
  const id = packet.properties?.subscriptionIdentifier?.[0]
  if (v5 && id !== undefined && !capabilities.subscriptionIdentifiersAvailable) {
    // Subscription Identifiers Available 0 was advertised in CONNACK
    return connection.protocolError('subscription identifier without support', ReasonCode.SubscriptionIdentifiersNotSupported)
  }
  const authorize = connection.broker.authorizeSubscribe
  const decisions: Array<Decision | Promise<Decision>> = packet.subscriptions.map((s) => {
    let filter = s.topicFilter
    if (filter.startsWith('$share/')) {
      // [MQTT-3.8.3-4] (5.0) a shared subscription must not use No Local
      if (v5 && s.noLocal) return { refuse: -1 }
      if (!capabilities.sharedSubscriptionAvailable) return { refuse: ReasonCode.SharedSubscriptionsNotSupported }
      const shared = parseSharedFilter(filter)
      if (shared === null) return { refuse: ReasonCode.TopicFilterInvalid }
      filter = shared.filter
    }
    if (!isValidTopicFilter(filter)) return { refuse: ReasonCode.TopicFilterInvalid }
    if (!capabilities.wildcardSubscriptionAvailable && hasWildcard(filter)) return { refuse: ReasonCode.WildcardSubscriptionsNotSupported }
    return authorize === undefined ? true : authorizeOne(authorize, connection, s)
  })
  if (decisions.some((d) => isRefusal(d) && d.refuse === -1)) {
    return connection.protocolError('No Local on a shared subscription', ReasonCode.ProtocolError)
  }
  if (decisions.some(isPromise)) return Promise.all(decisions).then((d) => finish(connection, packet, d))
  finish(connection, packet, decisions as Decision[])
}

/** Asks the host's hook about one subscription; what it throws is tagged as the hook's failure. */
function authorizeOne(authorize: AuthorizeSubscribeHook, connection: Connection, subscription: Subscription): Decision | Promise<Decision> {
  let decision: Decision | Promise<Decision>
  try {
    decision = authorize(connection, subscription)
  } catch (error) {
    throw hookThrew('authorizeSubscribe', error)
  }
  if (!isPromise(decision)) return decision
  return decision.then(undefined, (error: unknown) => {
    throw hookThrew('authorizeSubscribe', error)
  })
}

/** The SUBACK code: the granted QoS, or a failure code (0x80 for 3.1.1, a precise one for MQTT 5). */
function grantedQos(connection: Connection, requested: QoS, decision: Decision): number {
  const v5 = connection.protocolVersion === 5
  if (isRefusal(decision)) return v5 ? decision.refuse : SUBACK_FAILURE
  // Never grant more than the Maximum QoS advertised in CONNACK
  const cap = connection.broker.capabilities.maximumQoS
  const wanted = requested < cap ? requested : cap
  if (decision === true) return wanted
  // Anything but true or a QoS refuses. `false` is 0x80 for both versions (MQTT 5: Unspecified
  // error), as interoperability suites expect; an MQTT 5 host wanting 0x87 returns 0x87.
  if (decision !== 0 && decision !== 1 && decision !== 2) {
    return v5 && typeof decision === 'number' && decision >= 0x80 && decision <= 0xff ? decision : SUBACK_FAILURE
  }
  return decision < wanted ? decision : wanted
}

function finish(connection: Connection, packet: SubscribePacket, decisions: Decision[]): void {
  const session = connection.session
  if (connection.state === 'closed' || session === null) return
  const broker = connection.broker
  const v5 = connection.protocolVersion === 5
  const id = packet.properties?.subscriptionIdentifier?.[0]
  const mark = broker.journal.recorded
  const granted: Subscription[] = []
  /** What each granted subscription replaced, to put back if the store fails. */
  const replaced: Array<Subscription | undefined> = []
  /** Whether each granted subscription is new (for Retain Handling 1). */
  const isNew: boolean[] = []
  const reasonCodes = packet.subscriptions.map((s, i) => {
    const code = grantedQos(connection, s.qos, decisions[i] as Decision)
    if (code >= 0x80) {
      if (!isRefusal(decisions[i])) broker.counters.denied.subscribe++
      log.auth('Subscription of %s to %j refused (0x%s)', connection.id, s.topicFilter, code.toString(16))
      return code
    }
    const previous = session.subscriptions.get(s.topicFilter)
    const existed = previous !== undefined
    if (!existed && session.subscriptions.size >= broker.limits.maxSubscriptionsPerClient) {
      log.client('Subscription of %s to %j refused: maxSubscriptionsPerClient (%d) reached', connection.id, s.topicFilter, broker.limits.maxSubscriptionsPerClient)
      return v5 ? ReasonCode.QuotaExceeded : SUBACK_FAILURE
    }
    const subscription: Subscription = { ...s, qos: code as QoS }
    // A bridge must not get its own messages back, and needs the retain flag as published to
    // pass it on, as Mosquitto treats bridges (the MQTT 5 options, for a 3.1/3.1.1 bridge).
    if (connection.bridge) {
      subscription.noLocal = true
      subscription.retainAsPublished = true
    }
    if (id !== undefined) subscription.subscriptionIdentifier = id
    // [MQTT-3.8.4-3] a subscription to an existing filter replaces it
    broker.subscribe(session, subscription)
    granted.push(subscription)
    replaced.push(previous)
    isNew.push(!existed)
    return code
  })
  // A persistent session's subscriptions are acknowledged once stored.
  connection.afterCommit(
    mark,
    () => acknowledge(connection, packet, reasonCodes, granted, isNew),
    () => {
      if (!v5) return connection.storeFailed('a SUBSCRIBE')
      // Nothing of it was promised: the session goes back to what it had, and the client is told;
      // a subscription a later SUBSCRIBE has replaced meanwhile is that one's, and stays.
      for (let i = granted.length - 1; i >= 0; i--) {
        const subscription = granted[i] as Subscription
        if (session.subscriptions.get(subscription.topicFilter) !== subscription) continue
        const previous = replaced[i]
        if (previous === undefined) broker.unsubscribe(session, subscription.topicFilter)
        else broker.subscribe(session, previous)
      }
      acknowledge(connection, packet, reasonCodes.map(() => ReasonCode.UnspecifiedError), [], [])
    },
  )
}

/** SUBACK, then the retained messages of the new subscriptions. */
function acknowledge(connection: Connection, packet: SubscribePacket, reasonCodes: number[], granted: Subscription[], isNew: boolean[]): void {
  const broker = connection.broker
  const session = connection.session
  if (session === null) return
  // [MQTT-3.8.4-1] [MQTT-3.8.4-5] one SUBACK return code per requested filter, in order
  const properties = connection.protocolVersion === 5 ? problemProperties(connection.requestProblemInformation, reasonCodes) : undefined
  connection.send(properties ? { type: 'suback', packetId: packet.packetId, reasonCodes, properties } : { type: 'suback', packetId: packet.packetId, reasonCodes })
  if (log.packet.enabled) log.packet('Sending SUBACK to %s: %j', connection.id, reasonCodes)
  if (granted.length > 0) broker.emit('subscribe', granted, connection)
  // [MQTT-3.3.1-6] retained messages follow the SUBACK; a filter repeated in one packet is one
  // subscription (the last one replaced the others), so its retained messages go out once.
  const sent = new Set<string>()
  for (let i = granted.length - 1; i >= 0; i--) {
    const subscription = granted[i] as Subscription
    if (sent.has(subscription.topicFilter)) continue
    sent.add(subscription.topicFilter)
    // MQTT 5 Retain Handling: 0 always, 1 only for a new subscription, 2 never ([MQTT-3.3.1-9] to [MQTT-3.3.1-11] of 5.0)
    const handling = subscription.retainHandling ?? 0
    if (handling === 2 || (handling === 1 && !isNew[i])) continue
    // Retained messages are not sent for a shared subscription (5.0 section 4.8.2)
    if (subscription.topicFilter.startsWith('$share/')) continue
    connection.flow.addWork(broker.sendRetained(session, subscription))
  }
}
