import { hookThrew } from '../../hooks/errors.js'
import { isPromise } from '../../hooks/promise.js'
import type { AuthenticateResult } from '../../hooks/types.js'
import { log } from '../../logging.js'
import { isSupportedProtocol } from '../../protocol/decoder.js'
import type { ConnectPacket, Properties, ProtocolVersion } from '../../protocol/packets.js'
import { ConnackReturnCode, ReasonCode } from '../../protocol/reason-codes.js'
import { isOwnBridgeState, isSysTopic, isValidTopicName } from '../../protocol/topics.js'
import type { Connection } from '../connection.js'
import { startEnhancedAuth } from './auth.js'
import { accept, refuse } from './connack.js'

/** MQTT 3.1 limits client identifiers to 23 characters (3.1.1 lifted the limit, [MQTT-3.1.3-5]). */
const MQTT31_MAX_CLIENT_ID = 23

/** Client identifiers of the local sessions of the broker's own outgoing bridges (`bridge:<name>`, transport 'bridge'). */
const BRIDGE_CLIENT_PREFIX = 'bridge:'

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
  connection.bridge = packet.bridge === true
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
  if (clientId.startsWith(BRIDGE_CLIENT_PREFIX) && connection.transport !== 'bridge') {
    // The outboxes of the broker's own bridges: a network client taking one over would receive
    // (and could acknowledge away) what waits for the remote broker.
    return refuse(connection, ConnackReturnCode.IdentifierRejected, `client identifier ${JSON.stringify(clientId)} is reserved for the broker's bridges`)
  }
  const ban = broker.protection.connectBan(clientId, packet.username)
  if (ban !== undefined) {
    broker.counters.denied.connect++
    const why = `banned ${ban.clientId !== undefined ? 'client identifier' : 'user name'}${ban.reason === undefined ? '' : ` (${ban.reason})`}`
    return refuse(connection, v5 ? ReasonCode.Banned : ConnackReturnCode.NotAuthorized, why)
  }
  if (version === 3 && clientId.length > MQTT31_MAX_CLIENT_ID) {
    return refuse(connection, ConnackReturnCode.IdentifierRejected, 'MQTT 3.1 client identifier over 23 characters')
  }
  // [MQTT-3.1.3-10] [MQTT-4.7.3-1] [MQTT-3.3.2-2] the will is published as a PUBLISH: its topic must be a valid topic name
  if (packet.will !== undefined && !isValidTopicName(packet.will.topic)) {
    return connection.protocolError(`invalid will topic ${JSON.stringify(packet.will.topic)}`, ReasonCode.TopicNameInvalid)
  }
  if (packet.will !== undefined) {
    if (isSysTopic(packet.will.topic) && !isOwnBridgeState(packet.will.topic, clientId)) {
      // A will is published as the client: $SYS/ is the broker's own.
      return refuse(connection, v5 ? ReasonCode.NotAuthorized : ConnackReturnCode.NotAuthorized, `will on ${JSON.stringify(packet.will.topic)}`)
    }
    const capabilities = broker.capabilities
    // [MQTT-3.2.2-12] a will above Maximum QoS, [MQTT-3.2.2-13] a retained will without retain
    // support; 3.1/3.1.1 have no code for either: not authorized (5).
    if (packet.will.qos > capabilities.maximumQoS) {
      return refuse(connection, v5 ? ReasonCode.QoSNotSupported : ConnackReturnCode.NotAuthorized, `will QoS ${packet.will.qos} over the maximum`)
    }
    if (packet.will.retain && !capabilities.retainAvailable) {
      return refuse(connection, v5 ? ReasonCode.RetainNotSupported : ConnackReturnCode.NotAuthorized, 'retained will without retain support')
    }
  }
  if (!v5 && packet.keepAlive > broker.limits.maxKeepAlive) {
    // A 3.1/3.1.1 client cannot be told a lower keep alive, so it is refused, as Mosquitto does.
    return refuse(connection, ConnackReturnCode.IdentifierRejected, `keep alive ${packet.keepAlive} over the maximum ${broker.limits.maxKeepAlive}`)
  }
  broker.connectStarted(connection)
  if (broker.openConnections > broker.limits.maxConnections) {
    return refuse(connection, v5 ? ReasonCode.QuotaExceeded : ConnackReturnCode.ServerUnavailable, `maxConnections (${broker.limits.maxConnections}) reached`)
  }
  const method = v5 ? packet.properties?.authenticationMethod : undefined
  if (method !== undefined) return startEnhancedAuth(connection, packet, method)
  const authenticate = broker.authenticate
  if (authenticate === undefined) return accept(connection, packet)
  let result: AuthenticateResult | Promise<AuthenticateResult>
  try {
    result = authenticate({
      clientId,
      username: packet.username,
      password: packet.password,
      remoteAddress: connection.remoteAddress,
      remotePort: connection.remotePort,
      protocolVersion: connection.protocolVersion,
      transport: connection.transport,
      certificate: connection.certificate,
      request: connection.request,
    })
  } catch (error) {
    throw hookThrew('authenticate', error)
  }
  if (isPromise(result)) {
    return result.then(
      (r) => decide(connection, packet, r),
      (error: unknown) => {
        throw hookThrew('authenticate', error)
      },
    )
  }
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

function decide(connection: Connection, packet: ConnectPacket, result: AuthenticateResult): void | Promise<void> {
  if (connection.state === 'closed') return
  if (result === true) return accept(connection, packet)
  const returnCode = refusalCode(result, connection.protocolVersion === 5)
  const reasonString = typeof result === 'object' && result !== null ? result.reasonString : undefined
  log.auth('authenticate refused %s (user %j): return code %d', connection.id, packet.username, returnCode)
  connection.broker.counters.denied.connect++
  refuse(connection, returnCode, 'refused by authenticate', reasonString)
}
