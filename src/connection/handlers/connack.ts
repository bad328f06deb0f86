import { log } from '../../logging.js'
import type { ConnectPacket, Properties } from '../../protocol/packets.js'
import type { Session } from '../../session/session.js'
import { ConnackReturnCode, ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'

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
export function refuse(connection: Connection, returnCode: number, why: string, reasonString?: string): void {
  const code = connection.protocolVersion === 5 && returnCode < 0x80 ? (V5_REFUSAL[returnCode] ?? ReasonCode.UnspecifiedError) : returnCode
  log.client('Refusing %s (%s): %s; sending CONNACK %d', connection.id || 'client', connection.peer, why, code)
  connection.broker.counters.connack(code)
  const properties: Properties | undefined = connection.protocolVersion === 5 && reasonString !== undefined ? { reasonString } : undefined
  connection.send(properties ? { type: 'connack', sessionPresent: false, returnCode: code, properties } : { type: 'connack', sessionPresent: false, returnCode: code })
  connection.end('connect-refused')
  connection.broker.emit('connectRefused', {
    clientId: connection.id,
    username: connection.username,
    remoteAddress: connection.remoteAddress,
    remotePort: connection.remotePort,
    transport: connection.transport,
    protocolVersion: connection.protocolVersion,
    reasonCode: code,
    reason: why,
  })
}

/**
 * Accepts a client whose CONNECT (and authentication) passed: its session, then, once the store
 * holds the session and its will, CONNACK and events. Returns a promise while it waits for the
 * store, so nothing more is read from the client before its CONNACK.
 */
export function accept(connection: Connection, packet: ConnectPacket): void | Promise<void> {
  const cluster = connection.broker.cluster
  if (cluster === undefined) return acceptHere(connection, packet)
  const v5 = connection.protocolVersion === 5
  const unavailable = v5 ? ReasonCode.ServerUnavailable : ConnackReturnCode.ServerUnavailable
  if (!cluster.accepting) return refuse(connection, unavailable, 'this cluster node cannot reach Redis (its lease lapsed)')
  // The client id is claimed cluster-wide first: another node holding it closes its connection
  // and hands the session over [MQTT-3.1.4-3].
  return cluster.claim(connection.id).then(
    (won) => {
      if (connection.state !== 'connecting') return
      if (!won) {
        log.client('Closing %s (%s): a newer CONNECT with this client identifier arrived on another node', connection.id, connection.peer)
        connection.end('taken-over')
        return
      }
      return acceptHere(connection, packet)
    },
    (error: Error) => {
      if (connection.state === 'connecting') refuse(connection, unavailable, `the cluster could not claim the client identifier: ${error.message}`)
    },
  )
}

/** Accepts the client on this broker (in a cluster, once this node owns its client identifier). */
function acceptHere(connection: Connection, packet: ConnectPacket): void | Promise<void> {
  const broker = connection.broker
  const v5 = connection.protocolVersion === 5
  if (!broker.isLatestConnect(connection)) {
    // A newer CONNECT with this client identifier arrived while this one was being decided
    // (an async hook): the newest wins [MQTT-3.1.4-3], so this stale attempt goes quietly.
    log.client('Closing %s (%s): a newer CONNECT with this client identifier arrived meanwhile', connection.id, connection.peer)
    connection.end('taken-over')
    return
  }
  // [MQTT-3.1.4-3] a client connecting with an identifier already in use takes over: the
  // existing connection is closed (MQTT 5: DISCONNECT 0x8E)
  broker.clients.get(connection.id)?.end('taken-over')
  const journal = broker.journal
  const mark = journal.recorded
  // 3.1.1: clean session 0 makes the session persistent; MQTT 5: a non-zero Session Expiry Interval.
  const persistent = v5 ? connection.sessionExpiryInterval > 0 : !packet.cleanSession
  const expiryInterval = v5 ? connection.sessionExpiryInterval : persistent ? broker.limits.persistentSessionExpiry : 0
  const { session, present } = broker.openSession(connection.id, packet.cleanSession, persistent, expiryInterval)
  session.claimant = connection
  // Before anything can be routed to it: a bridge's session may be kept from some bridged messages.
  session.incomingBridge = connection.bridge
  connection.will = packet.will
  broker.wills.connected(session, packet.will)
  // Not only this CONNECT's changes: a CONNACK also vouches that a stored session discarded
  // earlier (another connection's clean start, an expiry) stays gone. A client whose CONNECT
  // changed nothing stored and whose identifier has no such deletion pending does not wait.
  if (!journal.durable || (journal.recorded === mark && !broker.deletionPending(connection.id))) return welcome(connection, packet, session, present)
  return new Promise((resolve) => {
    journal.afterCommit((ok) => {
      resolve()
      if (ok && connection.state === 'connecting' && broker.isLatestConnect(connection)) return welcome(connection, packet, session, present)
      if (connection.state === 'connecting') {
        if (ok) connection.end('taken-over')
        else refuse(connection, v5 ? ReasonCode.UnspecifiedError : ConnackReturnCode.ServerUnavailable, 'the store failed to keep the session')
      }
      broker.sessionAbandoned(session, connection)
    })
  })
}

/** CONNACK and the start of the client's life: its session attached, in-flight messages re-sent. */
function welcome(connection: Connection, packet: ConnectPacket, session: Session, present: boolean): void {
  const broker = connection.broker
  const v5 = connection.protocolVersion === 5
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
  broker.counters.connack(0)
  // [MQTT-3.2.2-1..3] session present reflects whether a stored session was resumed
  // MQTT 3.1 has no session present flag: its CONNACK flags byte is reserved.
  const sessionPresent = present && connection.protocolVersion !== 3
  if (v5) {
    connection.send({ type: 'connack', sessionPresent, returnCode: 0, properties: connackProperties(connection, packet, serverKeepAlive) })
  } else {
    connection.send({ type: 'connack', sessionPresent, returnCode: 0 })
  }
  broker.clientAccepted(connection)
  session.claimant = null
  broker.wills.accepted(session)
  session.attach(connection)
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
  const auth = connection.auth
  if (auth !== undefined) {
    // The CONNACK of an enhanced authentication names its method and carries its final data (3.2.2.3.17)
    properties.authenticationMethod = auth.method
    if (auth.finalData !== undefined) properties.authenticationData = auth.finalData
  }
  return properties
}
