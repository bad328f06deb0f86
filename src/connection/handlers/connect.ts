import { isPromise } from '../../hooks/promise.js'
import type { AuthenticateResult } from '../../hooks/types.js'
import { log } from '../../logging.js'
import { isSupportedProtocol } from '../../protocol/decoder.js'
import type { ConnectPacket, Properties, ProtocolVersion } from '../../protocol/packets.js'
import { ConnackReturnCode, ReasonCode } from '../../protocol/reason-codes.js'
import { isValidTopicName } from '../../protocol/topics.js'
import type { Connection } from '../connection.js'

/** MQTT 3.1 limits client identifiers to 23 characters (3.1.1 lifted the limit, [MQTT-3.1.3-5]). */
const MQTT31_MAX_CLIENT_ID = 23

/** The MQTT 5 reason code for each 3.1.1 CONNACK return code. */
const V5_REFUSAL: Record<number, number> = {
  [ConnackReturnCode.UnacceptableProtocolVersion]: ReasonCode.UnsupportedProtocolVersion,
  [ConnackReturnCode.IdentifierRejected]: ReasonCode.ClientIdentifierNotValid,
  [ConnackReturnCode.ServerUnavailable]: ReasonCode.ServerUnavailable,
  [ConnackReturnCode.BadUsernameOrPassword]: ReasonCode.BadUserNameOrPassword,
  [ConnackReturnCode.NotAuthorized]: ReasonCode.NotAuthorized,
}

/**
 * Refuses the connection: CONNACK with `returnCode` (a 3.1.1 code, translated for MQTT 5 clients,
 * or an MQTT 5 code as is), then close. [MQTT-3.2.2-4] session present 0; [MQTT-3.2.2-5] close.
 */
function refuse(connection: Connection, returnCode: number, why: string, reasonString?: string): void {
  const code = connection.protocolVersion === 5 && returnCode < 0x80 ? (V5_REFUSAL[returnCode] ?? ReasonCode.UnspecifiedError) : returnCode
  log.client('Refusing %s (%s): %s; sending CONNACK %d', connection.id || 'client', connection.peer, why, code)
  const properties: Properties | undefined = connection.protocolVersion === 5 && reasonString !== undefined ? { reasonString } : undefined
  connection.send(properties ? { type: 'connack', sessionPresent: false, returnCode: code, properties } : { type: 'connack', sessionPresent: false, returnCode: code })
  connection.close('connect-refused')
}

/** The CONNECT handshake: version, identifier, limits, authentication, then the session. */
export function handleConnect(connection: Connection, packet: ConnectPacket): void | Promise<void> {
  const broker = connection.broker
  const version = packet.protocolVersion
  connection.state = 'connecting'
  if (!isSupportedProtocol(packet.protocolName, version)) {
    // [MQTT-3.1.2-2] an unsupported protocol level gets return code 1, then the connection closes
    return refuse(connection, ConnackReturnCode.UnacceptableProtocolVersion, `unsupported protocol ${packet.protocolName} level ${version}`)
  }
  connection.protocolVersion = version as ProtocolVersion
  const v5 = version === 5
  connection.cleanSession = packet.cleanSession
  connection.username = packet.username
  let clientId = packet.clientId
  connection.id = clientId
  if (v5) readConnectProperties(connection, packet.properties ?? {})
  if (clientId.length === 0) {
    // [MQTT-3.1.3-8] 3.1.1: an empty identifier needs clean session; 3.1 requires an identifier.
    // MQTT 5 assigns one whatever Clean Start says [MQTT-3.1.3-6] and returns it in CONNACK.
    if (!v5 && (!packet.cleanSession || version === 3)) {
      return refuse(connection, ConnackReturnCode.IdentifierRejected, 'empty client identifier without clean session')
    }
    // [MQTT-3.1.3-6] the server assigns a unique identifier
    clientId = broker.assignClientId()
    connection.id = clientId
  }
  if (version === 3 && clientId.length > MQTT31_MAX_CLIENT_ID) {
    return refuse(connection, ConnackReturnCode.IdentifierRejected, 'MQTT 3.1 client identifier over 23 characters')
  }
  // [MQTT-3.1.3-10] [MQTT-4.7.3-1] [MQTT-3.3.2-2] the will is published as a PUBLISH: its topic must be a valid topic name
  if (packet.will !== undefined && !isValidTopicName(packet.will.topic)) {
    return connection.protocolError(`invalid will topic ${JSON.stringify(packet.will.topic)}`, ReasonCode.TopicNameInvalid)
  }
  if (packet.will !== undefined && v5) {
    const capabilities = broker.capabilities
    // [MQTT-3.2.2-12] a will above Maximum QoS, [MQTT-3.2.2-13] a retained will without retain support
    if (packet.will.qos > capabilities.maximumQoS) return refuse(connection, ReasonCode.QoSNotSupported, `will QoS ${packet.will.qos} over the maximum`)
    if (packet.will.retain && !capabilities.retainAvailable) return refuse(connection, ReasonCode.RetainNotSupported, 'retained will without retain support')
  }
  if (!v5 && packet.keepAlive > broker.limits.maxKeepAlive) {
    // A 3.1/3.1.1 client cannot be told a lower keep alive, so it is refused, as Mosquitto does.
    return refuse(connection, ConnackReturnCode.IdentifierRejected, `keep alive ${packet.keepAlive} over the maximum ${broker.limits.maxKeepAlive}`)
  }
  if (broker.openConnections > broker.limits.maxConnections) {
    return refuse(connection, v5 ? ReasonCode.QuotaExceeded : ConnackReturnCode.ServerUnavailable, `maxConnections (${broker.limits.maxConnections}) reached`)
  }
  const authenticate = broker.authenticate
  if (authenticate === undefined) return accept(connection, packet)
  const result = authenticate({
    clientId,
    username: packet.username,
    password: packet.password,
    remoteAddress: connection.remoteAddress,
    protocolVersion: connection.protocolVersion,
  })
  if (isPromise(result)) return result.then((r) => decide(connection, packet, r))
  return decide(connection, packet, result)
}

/** Takes what an MQTT 5 client says about itself in CONNECT. */
function readConnectProperties(connection: Connection, properties: Properties): void {
  const limits = connection.broker.limits
  if (properties.receiveMaximum !== undefined) connection.clientReceiveMaximum = properties.receiveMaximum
  if (properties.maximumPacketSize !== undefined) connection.clientMaximumPacketSize = properties.maximumPacketSize
  if (properties.requestProblemInformation === 0) connection.requestProblemInformation = false
  if (properties.topicAliasMaximum !== undefined) connection.clientTopicAliasMaximum = properties.topicAliasMaximum
  const expiry = properties.sessionExpiryInterval ?? 0
  connection.sessionExpiryInterval = Math.min(expiry, limits.maxSessionExpiryInterval)
}

/** The CONNACK code for an `authenticate` answer other than `true`. */
function refusalCode(result: unknown, v5: boolean): number {
  if (result === false) return ConnackReturnCode.BadUsernameOrPassword
  const code = (result as { reasonCode?: unknown } | null)?.reasonCode
  // 3.1/3.1.1 define refusal codes 1 to 5 only, MQTT 5 the codes from 0x80; anything else (a typo,
  // no answer) must still refuse, in a code the client understands.
  if (typeof code === 'number' && code >= 1 && code <= 5) return code
  if (v5 && typeof code === 'number' && code >= 0x80 && code <= 0xff) return code
  log.error('authenticate returned %j, which is neither true, false nor a refusal code: refusing as not authorized', result)
  return ConnackReturnCode.NotAuthorized
}

function decide(connection: Connection, packet: ConnectPacket, result: AuthenticateResult): void {
  if (connection.state === 'closed') return
  if (result === true) return accept(connection, packet)
  const returnCode = refusalCode(result, connection.protocolVersion === 5)
  const reasonString = typeof result === 'object' && result !== null ? result.reasonString : undefined
  log.auth('authenticate refused %s (user %j): return code %d', connection.id, packet.username, returnCode)
  refuse(connection, returnCode, 'refused by authenticate', reasonString)
}

function accept(connection: Connection, packet: ConnectPacket): void {
  const broker = connection.broker
  const v5 = connection.protocolVersion === 5
  const existing = broker.sessions.get(connection.id)
  // [MQTT-3.1.4-2] a client connecting with an identifier already in use takes over
  if (existing?.link) {
    const previous = existing.link as unknown as Connection
    log.client('Client %s already connected from %s, closing the old connection', connection.id, previous.peer)
    previous.close('taken-over')
  }
  // 3.1.1: clean session 0 makes the session persistent; MQTT 5: a non-zero Session Expiry Interval.
  const persistent = v5 ? connection.sessionExpiryInterval > 0 : !packet.cleanSession
  const expiryInterval = v5 ? connection.sessionExpiryInterval : persistent ? 0xffffffff : 0
  const { session, present } = broker.openSession(connection.id, packet.cleanSession, persistent, expiryInterval)
  connection.will = packet.will
  session.will = packet.will
  let keepAlive = packet.keepAlive
  const maxKeepAlive = broker.limits.maxKeepAlive
  // MQTT 5: a keep alive over the maximum (or none, where there is a maximum) is replaced by the
  // maximum, which the client is told in Server Keep Alive and must use [MQTT-3.2.2-21].
  const serverKeepAlive = v5 && (keepAlive > maxKeepAlive || (keepAlive === 0 && maxKeepAlive < 65_535)) ? maxKeepAlive : undefined
  if (serverKeepAlive !== undefined) keepAlive = serverKeepAlive
  connection.accepted(session, keepAlive)
  log.client(
    'New client connected from %s as %s (p%d, c%d, k%d%s%s)',
    connection.peer,
    connection.id,
    connection.protocolVersion,
    packet.cleanSession ? 1 : 0,
    keepAlive,
    packet.username === undefined ? '' : `, u'${packet.username}'`,
    packet.will ? `, will on '${packet.will.topic}'` : '',
  )
  log.client('Sending CONNACK to %s (%d, 0)', connection.id, present ? 1 : 0)
  // [MQTT-3.2.2-1..3] session present reflects whether a stored session was resumed
  // MQTT 3.1 has no session present flag: its CONNACK flags byte is reserved.
  const sessionPresent = present && connection.protocolVersion !== 3
  if (v5) {
    connection.send({ type: 'connack', sessionPresent, returnCode: 0, properties: connackProperties(connection, packet, serverKeepAlive) })
  } else {
    connection.send({ type: 'connack', sessionPresent, returnCode: 0 })
  }
  session.attach(connection)
  broker.sessionChanged(session)
  broker.emit('clientConnect', connection)
}

/** What the broker tells an MQTT 5 client it accepted: its limits and capabilities, section 3.2.2.3. */
function connackProperties(connection: Connection, packet: ConnectPacket, serverKeepAlive: number | undefined): Properties {
  const { limits, capabilities } = connection.broker
  const requested = packet.properties ?? {}
  const properties: Properties = {
    receiveMaximum: limits.receiveMaximum,
    maximumPacketSize: limits.maxPacketSize,
    topicAliasMaximum: limits.topicAliasMaximum,
    retainAvailable: capabilities.retainAvailable ? 1 : 0,
    wildcardSubscriptionAvailable: capabilities.wildcardSubscriptionAvailable ? 1 : 0,
    subscriptionIdentifiersAvailable: capabilities.subscriptionIdentifiersAvailable ? 1 : 0,
    sharedSubscriptionAvailable: capabilities.sharedSubscriptionAvailable ? 1 : 0,
  }
  // [MQTT-3.2.2-9] Maximum QoS is sent only when below 2
  if (capabilities.maximumQoS < 2) properties.maximumQoS = capabilities.maximumQoS
  if (packet.clientId.length === 0) properties.assignedClientIdentifier = connection.id
  if (serverKeepAlive !== undefined) properties.serverKeepAlive = serverKeepAlive
  if ((requested.sessionExpiryInterval ?? 0) !== connection.sessionExpiryInterval) {
    properties.sessionExpiryInterval = connection.sessionExpiryInterval
  }
  if (requested.requestResponseInformation === 1 && capabilities.responseInformation !== undefined) {
    properties.responseInformation = capabilities.responseInformation
  }
  return properties
}
