import { hookThrew } from '../../hooks/errors.js'
import { isPromise } from '../../hooks/promise.js'
import type { EnhancedAuthResult } from '../../hooks/types.js'
import { log } from '../../logging.js'
import type { AuthPacket, ConnectPacket, Properties } from '../../protocol/packets.js'
import { ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'
import { accept, refuse } from './connack.js'

/**
 * MQTT 5 enhanced authentication (section 4.12): the CONNECT's Authentication Method and Data
 * start an exchange of AUTH packets run by the `enhancedAuthenticate` hook, step by step.
 */
export function startEnhancedAuth(connection: Connection, packet: ConnectPacket, method: string): void | Promise<void> {
  if (connection.broker.enhancedAuthenticate === undefined) {
    // Section 4.12: an Authentication Method the server does not support gets 0x8C
    return refuse(connection, ReasonCode.BadAuthenticationMethod, `authentication method ${JSON.stringify(method)} without an enhancedAuthenticate hook`)
  }
  connection.auth = { method, state: undefined, connect: packet }
  return step(connection, packet.properties?.authenticationData, false)
}

/** An AUTH packet from the client: the next step of an exchange, or a re-authentication. */
export function handleAuth(connection: Connection, packet: AuthPacket): void | Promise<void> {
  const auth = connection.auth
  const method = packet.properties?.authenticationMethod
  // [MQTT-4.12.0-5] (and -7) AUTH only within an exchange the CONNECT started, with the same method
  if (auth === undefined || method !== auth.method) {
    return connection.protocolError('AUTH without enhanced authentication, or with another method', ReasonCode.ProtocolError)
  }
  const data = packet.properties?.authenticationData
  if (connection.state === 'connecting') {
    if (packet.reasonCode !== ReasonCode.ContinueAuthentication) return connection.protocolError('AUTH during CONNECT must continue the exchange', ReasonCode.ProtocolError)
    return step(connection, data, false)
  }
  if (packet.reasonCode === ReasonCode.ReAuthenticate) {
    auth.state = undefined
    auth.reauthenticating = true
    return step(connection, data, true)
  }
  if (packet.reasonCode === ReasonCode.ContinueAuthentication && auth.reauthenticating) return step(connection, data, true)
  return connection.protocolError(`unexpected AUTH reason 0x${packet.reasonCode.toString(16)}`, ReasonCode.ProtocolError)
}

function step(connection: Connection, data: Buffer | undefined, reauthenticate: boolean): void | Promise<void> {
  const auth = connection.auth
  const hook = connection.broker.enhancedAuthenticate
  if (auth === undefined || hook === undefined) return
  let result: EnhancedAuthResult | Promise<EnhancedAuthResult>
  try {
    result = hook({ method: auth.method, data, clientId: connection.id, username: connection.username, state: auth.state, reauthenticate })
  } catch (error) {
    throw hookThrew('enhancedAuthenticate', error)
  }
  if (isPromise(result)) {
    return result.then(
      (r) => answer(connection, r, reauthenticate),
      (error: unknown) => {
        throw hookThrew('enhancedAuthenticate', error)
      },
    )
  }
  return answer(connection, result, reauthenticate)
}

function answer(connection: Connection, result: EnhancedAuthResult, reauthenticate: boolean): void | Promise<void> {
  const auth = connection.auth
  if (auth === undefined || connection.state === 'closed') return
  if ('continue' in result) {
    auth.state = result.state
    const properties: Properties = { authenticationMethod: auth.method }
    if (result.continue !== undefined) properties.authenticationData = result.continue
    connection.send({ type: 'auth', reasonCode: ReasonCode.ContinueAuthentication, properties })
    return
  }
  if ('success' in result) {
    auth.state = undefined
    auth.reauthenticating = false
    auth.finalData = result.data
    if (!reauthenticate) return accept(connection, auth.connect)
    const properties: Properties = { authenticationMethod: auth.method }
    if (result.data !== undefined) properties.authenticationData = result.data
    log.auth('Re-authenticated %s', connection.id)
    connection.send({ type: 'auth', reasonCode: ReasonCode.Success, properties })
    return
  }
  const code = result.reasonCode >= 0x80 && result.reasonCode <= 0xff ? result.reasonCode : ReasonCode.NotAuthorized
  log.auth('Enhanced authentication of %s failed: 0x%s', connection.id, code.toString(16))
  // [MQTT-4.12.1-2] a failed re-authentication ends the connection with DISCONNECT
  if (reauthenticate) connection.end('protocol-error', code, result.reasonString)
  else refuse(connection, code, 'refused by enhancedAuthenticate', result.reasonString)
}
