import type { AuthenticateResult } from '../../hooks/types.js'
import { isPromise } from '../../hooks/promise.js'
import { log } from '../../logging.js'
import { isSupportedProtocol } from '../../protocol/decoder.js'
import type { ConnectPacket, ProtocolVersion } from '../../protocol/packets.js'
import { isValidTopicName } from '../../protocol/topics.js'
import { ConnackReturnCode, ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'

/** MQTT 3.1 limits client identifiers to 23 characters (3.1.1 lifted the limit, [MQTT-3.1.3-5]). */
const MQTT31_MAX_CLIENT_ID = 23

function refuse(connection: Connection, returnCode: number, why: string): void {
  log.client('Refusing %s (%s): %s; sending CONNACK %d', connection.id || 'client', connection.peer, why, returnCode)
  // [MQTT-3.2.2-4] a refused CONNACK has session present 0; [MQTT-3.2.2-5] then the connection closes
  connection.send({ type: 'connack', sessionPresent: false, returnCode })
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
  if (version === 5) {
    // MQTT 5 clients are told in their own CONNACK format.
    connection.protocolVersion = 5
    return refuse(connection, ReasonCode.UnsupportedProtocolVersion, 'MQTT 5 is not supported yet')
  }
  connection.protocolVersion = version as ProtocolVersion
  connection.cleanSession = packet.cleanSession
  connection.username = packet.username
  let clientId = packet.clientId
  connection.id = clientId
  if (clientId.length === 0) {
    // [MQTT-3.1.3-8] an empty identifier needs clean session; 3.1 requires an identifier.
    if (!packet.cleanSession || version === 3) {
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
    return connection.protocolError(`invalid will topic ${JSON.stringify(packet.will.topic)}`)
  }
  if (packet.keepAlive > broker.limits.maxKeepAlive) {
    // A 3.1/3.1.1 client cannot be told a lower keep alive, so it is refused, as Mosquitto does.
    return refuse(connection, ConnackReturnCode.IdentifierRejected, `keep alive ${packet.keepAlive} over the maximum ${broker.limits.maxKeepAlive}`)
  }
  if (broker.openConnections > broker.limits.maxConnections) {
    return refuse(connection, ConnackReturnCode.ServerUnavailable, `maxConnections (${broker.limits.maxConnections}) reached`)
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

/** The CONNACK return code for an `authenticate` answer other than `true`. */
function refusalCode(result: unknown): number {
  if (result === false) return ConnackReturnCode.BadUsernameOrPassword
  const code = (result as { reasonCode?: unknown } | null)?.reasonCode
  // 3.1/3.1.1 define refusal codes 1 to 5 only; anything else (a typo, an MQTT 5 code, no answer)
  // must still refuse, and say so in a code the client understands.
  if (typeof code === 'number' && code >= 1 && code <= 5) return code
  log.error('authenticate returned %j, which is neither true, false nor { reasonCode: 1..5 }: refusing with 5', result)
  return ConnackReturnCode.NotAuthorized
}

function decide(connection: Connection, packet: ConnectPacket, result: AuthenticateResult): void {
  if (connection.state === 'closed') return
  if (result === true) return accept(connection, packet)
  const returnCode = refusalCode(result)
  log.auth('authenticate refused %s (user %j): return code %d', connection.id, packet.username, returnCode)
  refuse(connection, returnCode, 'refused by authenticate')
}

function accept(connection: Connection, packet: ConnectPacket): void {
  const broker = connection.broker
  const existing = broker.sessions.get(connection.id)
  // [MQTT-3.1.4-2] a client connecting with an identifier already in use takes over
  if (existing?.link) {
    const previous = existing.link as unknown as Connection
    log.client('Client %s already connected from %s, closing the old connection', connection.id, previous.peer)
    previous.close('taken-over')
  }
  const { session, present } = broker.openSession(connection.id, packet.cleanSession)
  connection.will = packet.will
  session.will = packet.will
  connection.accepted(session, packet.keepAlive)
  log.client(
    'New client connected from %s as %s (p%d, c%d, k%d%s%s)',
    connection.peer,
    connection.id,
    connection.protocolVersion,
    packet.cleanSession ? 1 : 0,
    packet.keepAlive,
    packet.username === undefined ? '' : `, u'${packet.username}'`,
    packet.will ? `, will on '${packet.will.topic}'` : '',
  )
  log.client('Sending CONNACK to %s (%d, 0)', connection.id, present ? 1 : 0)
  // [MQTT-3.2.2-1..3] session present reflects whether a stored session was resumed
  // MQTT 3.1 has no session present flag: its CONNACK flags byte is reserved.
  connection.send({ type: 'connack', sessionPresent: present && connection.protocolVersion !== 3, returnCode: 0 })
  session.attach(connection)
  broker.sessionChanged(session)
  broker.emit('clientConnect', connection)
}
