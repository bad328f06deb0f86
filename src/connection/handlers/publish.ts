import { isUtf8 } from 'node:buffer'
import { hookThrew } from '../../hooks/errors.js'
import { isPromise } from '../../hooks/promise.js'
import { log } from '../../logging.js'
import type { PublishPacket } from '../../protocol/packets.js'
import { ACK_REASON_CODES, ReasonCode } from '../../protocol/reason-codes.js'
import { isOwnBridgeState, isSysTopic, isValidTopicName } from '../../protocol/topics.js'
import { RoutedMessage } from '../../session/routed-message.js'
import type { Connection } from '../connection.js'
import { problemProperties } from '../problem.js'

export function handlePublish(connection: Connection, packet: PublishPacket): void | Promise<void> {
  if (log.packet.enabled) {
    log.packet('Received PUBLISH from %s (d%d, q%d, r%d, m%d, %j, ... (%d bytes))', connection.id, packet.dup ? 1 : 0, packet.qos, packet.retain ? 1 : 0, packet.packetId, packet.topic, packet.payload.length)
  }
  const session = connection.session
  if (session === null) return
  const journal = connection.broker.journal
  // Too much waits for the store: this publisher is not read until it catches up.
  if (journal.overloaded) return journal.relief().then(() => handlePublish(connection, packet))
  const counters = connection.broker.counters
  counters.messagesReceived[packet.qos] = (counters.messagesReceived[packet.qos] as number) + 1
  if (connection.broker.limits.maxPublishRate > 0 && !connection.publishRate.take(connection.broker.limits.maxPublishRate)) {
    counters.drop('rate_limited')
    return connection.protocolError(`over ${connection.broker.limits.maxPublishRate} PUBLISH per second`, ReasonCode.MessageRateTooHigh)
  }
  if (connection.protocolVersion === 5) {
    if (!checkV5(connection, packet)) return
  } else if (!checkCapabilities(connection, packet)) return
  // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] at least one character. The
  // decoder hands a repeated topic back as the same string, so a publisher's usual topic is checked once.
  if (packet.topic !== connection.lastValidTopic) {
    if (!isValidTopicName(packet.topic)) return connection.protocolError(`invalid topic name ${JSON.stringify(packet.topic)} in PUBLISH`, ReasonCode.TopicNameInvalid)
    connection.lastValidTopic = packet.topic
  }
  if (packet.qos === 2 && session.incomingQos2.has(packet.packetId)) {
    // [MQTT-4.3.3-2] a QoS 2 message already delivered and not yet released is not delivered again
    const pubrec = { type: 'pubrec', packetId: packet.packetId } as const
    connection.afterCommit(journal.recorded, () => connection.send(pubrec), () => connection.storeFailed('a QoS 2 PUBLISH'))
    return
  }
  // Received when its bytes were read: one clock reading per read, not one per message.
  const message = new RoutedMessage(packet.topic, packet.payload, packet.qos, packet.retain, connection.lastReadAt)
  if (packet.properties !== undefined) message.properties = packet.properties
  else if (packet.bytesBeforePayload !== undefined) {
    message.bytesBeforePayload = packet.bytesBeforePayload
    if (packet.wire !== undefined) message.wire = packet.wire
  }
  // $SYS/ topics carry what the broker says about itself: only the host may publish there.
  if (isSysTopic(packet.topic) && !isOwnBridgeState(packet.topic, connection.id)) return finish(connection, packet, message, false)
  const authorize = connection.broker.authorizePublish
  if (authorize === undefined) return finish(connection, packet, message, true)
  let allowed: boolean | number | Promise<boolean | number>
  try {
    allowed = authorize(connection, message)
  } catch (error) {
    throw hookThrew('authorizePublish', error)
  }
  if (isPromise(allowed)) {
    return allowed.then(
      (ok) => finish(connection, packet, message, ok),
      (error: unknown) => {
        throw hookThrew('authorizePublish', error)
      },
    )
  }
  finish(connection, packet, message, allowed)
}

/**
 * The capabilities, for MQTT 3.1/3.1.1 clients. They cannot be told why (no reason codes), and a
 * PUBLISH the server will not perform must be acknowledged as usual or the connection closed
 * [MQTT-3.3.5-2]: it is closed, so the client does not believe the message was taken.
 */
function checkCapabilities(connection: Connection, packet: PublishPacket): boolean {
  const { capabilities } = connection.broker
  if (packet.qos > capabilities.maximumQoS) {
    connection.protocolError(`PUBLISH at QoS ${packet.qos} over capabilities.maximumQoS ${capabilities.maximumQoS}`)
    return false
  }
  if (packet.retain && !capabilities.retainAvailable) {
    connection.protocolError('retained PUBLISH while capabilities.retainAvailable is false')
    return false
  }
  return true
}

/**
 * The MQTT 5 checks: topic aliases, Receive Maximum, capabilities, payload format. Returns false
 * when the packet was answered (refused) or the connection closed.
 */
function checkV5(connection: Connection, packet: PublishPacket): boolean {
  const { limits, capabilities } = connection.broker
  const properties = packet.properties
  const alias = properties?.topicAlias
  if (alias !== undefined) {
    // [MQTT-3.3.2-8] alias 0, [MQTT-3.3.2-9] an alias above our Topic Alias Maximum
    if (alias === 0 || alias > limits.topicAliasMaximum) {
      connection.protocolError(`topic alias ${alias} outside 1..${limits.topicAliasMaximum}`, ReasonCode.TopicAliasInvalid)
      return false
    }
    const aliases = (connection.inboundAliases ??= new Map())
    if (packet.topic.length === 0) {
      const topic = aliases.get(alias)
      if (topic === undefined) {
        connection.protocolError(`topic alias ${alias} used before it was set`, ReasonCode.ProtocolError)
        return false
      }
      packet.topic = topic
    } else {
      // [MQTT-3.3.2-12] a topic with an alias (re)sets the mapping
      aliases.set(alias, packet.topic)
    }
  }
  if (properties?.subscriptionIdentifier !== undefined) {
    // [MQTT-3.3.4-6] a client must not send subscription identifiers
    connection.protocolError('subscription identifier on a PUBLISH from a client', ReasonCode.ProtocolError)
    return false
  }
  if (packet.qos === 2 && !connection.session?.incomingQos2.has(packet.packetId) && (connection.session?.incomingQos2.size ?? 0) >= limits.receiveMaximum) {
    // [MQTT-3.3.4-7] [MQTT-3.3.4-8] more unacknowledged QoS 2 PUBLISHes than our Receive Maximum
    connection.protocolError(`over the Receive Maximum of ${limits.receiveMaximum}`, ReasonCode.ReceiveMaximumExceeded)
    return false
  }
  if (packet.qos > capabilities.maximumQoS) {
    // [MQTT-3.2.2-11] a PUBLISH above the Maximum QoS in CONNACK
    connection.protocolError(`PUBLISH at QoS ${packet.qos} over the Maximum QoS ${capabilities.maximumQoS}`, ReasonCode.QoSNotSupported)
    return false
  }
  if (packet.retain && !capabilities.retainAvailable) {
    // [MQTT-3.2.2-14] RETAIN 1 when Retain Available is 0
    connection.protocolError('retained PUBLISH without retain support', ReasonCode.RetainNotSupported)
    return false
  }
  if (capabilities.validatePayloadFormat && properties?.payloadFormatIndicator === 1 && !isUtf8(packet.payload)) {
    // Section 3.3.2.3.2: the receiver may refuse a payload that is not the UTF-8 it claims to be
    if (packet.qos === 0) {
      connection.protocolError('payload is not valid UTF-8 though its Payload Format Indicator says so', ReasonCode.PayloadFormatInvalid)
    } else {
      acknowledge(connection, packet, ReasonCode.PayloadFormatInvalid)
    }
    return false
  }
  return true
}

function finish(connection: Connection, packet: PublishPacket, message: RoutedMessage, answer: boolean | number): void {
  if (connection.state === 'closed') return
  const mark = connection.broker.journal.recorded
  let reasonCode: number = ReasonCode.Success
  const allowed = answer === true || answer === 0
  if (allowed) {
    const reached = connection.broker.publish(message, connection, connection.session)
    connection.flow.addDeliveries(reached)
    if (reached === 0) reasonCode = ReasonCode.NoMatchingSubscribers
  } else {
    connection.broker.counters.drop('not_authorized')
    connection.broker.counters.denied.publish++
    log.auth('authorizePublish refused PUBLISH from %s to %j (q%d): dropped', connection.id, packet.topic, packet.qos)
    // 3.1.1 has no way to say no, so a refused QoS 1/2 message is still acknowledged
    // [MQTT-3.3.5-2]; MQTT 5 says why: the hook's reason code if PUBACK/PUBREC may carry it
    // [MQTT-3.4.2-1] [MQTT-3.5.2-1], 0x80 if not, 0x87 for `false`.
    if (typeof answer !== 'number' || answer < 0x80) reasonCode = ReasonCode.NotAuthorized
    else reasonCode = ACK_REASON_CODES.puback.has(answer) ? answer : ReasonCode.UnspecifiedError
  }
  // In a cluster the subscribers may be on other nodes: asked when the acknowledgement leaves,
  // with the routes the commit brought up to date.
  acknowledge(connection, packet, reasonCode, mark, allowed && reasonCode === ReasonCode.NoMatchingSubscribers ? message.topic : undefined)
}

/**
 * PUBACK or PUBREC for a QoS 1/2 PUBLISH, once what it promises is stored: the message in every
 * persistent session it entered, retained, and (QoS 2) its identifier held. The reason code
 * reaches MQTT 5 clients only. If the store fails, an MQTT 5 QoS 1 publisher is told 0x80; a QoS 2
 * or 3.1.1 publisher is disconnected, so it sends the message again.
 */
function acknowledge(connection: Connection, packet: PublishPacket, reasonCode: number, mark = connection.broker.journal.recorded, unmatchedTopic?: string): void {
  if (packet.qos === 0) return
  const v5 = connection.protocolVersion === 5
  const session = connection.session
  const type = packet.qos === 1 ? 'puback' : 'pubrec'
  // A refused QoS 2 message (reason code 0x80 or more) ends here: no PUBREL follows, so its identifier is not held
  const holds = packet.qos === 2 && session !== null && (!v5 || reasonCode < 0x80)
  if (holds) connection.broker.qos2Received(session, packet.packetId)
  // No closure on the usual path (an acknowledgement sent at once): it would be made per message.
  if (connection.mayAckNow(mark)) return sendAck(connection, type, packet.packetId, v5 ? finalCode(connection, reasonCode, unmatchedTopic) : undefined)
  connection.afterCommit(
    mark,
    () => sendAck(connection, type, packet.packetId, v5 ? finalCode(connection, reasonCode, unmatchedTopic) : undefined),
    () => {
      // The broker keeps the message in memory and stores it once the store is back, so it may
      // still be delivered: 0x80 says it was not promised. A QoS 2 message must not be taken
      // twice, so its identifier stays held and the client is disconnected: it resends the
      // PUBLISH (DUP), which is answered, not delivered again [MQTT-4.3.3-2]. A 3.1.1 client
      // cannot be told at all.
      if (!v5 || packet.qos === 2) return connection.storeFailed('a PUBLISH')
      sendAck(connection, type, packet.packetId, ReasonCode.UnspecifiedError)
    },
  )
}

/** The reason code when the acknowledgement leaves: in a cluster, a topic no local subscriber had may reach another node's. */
function finalCode(connection: Connection, reasonCode: number, unmatchedTopic: string | undefined): number {
  return unmatchedTopic !== undefined && connection.broker.cluster?.reaches(unmatchedTopic) === true ? ReasonCode.Success : reasonCode
}

function sendAck(connection: Connection, type: 'puback' | 'pubrec', packetId: number, code: number | undefined): void {
  if (!code) return connection.sendAck(type, packetId)
  const properties = code === undefined ? undefined : problemProperties(connection.requestProblemInformation, [code])
  connection.send(code ? { type, packetId, reasonCode: code, properties } : { type, packetId })
}
