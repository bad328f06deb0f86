import { log } from '../../logging.js'
import type { DisconnectPacket } from '../../protocol/packets.js'
import { ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'

export function handleDisconnect(connection: Connection, packet: DisconnectPacket): void {
  log.packet('Received DISCONNECT from %s (reason 0x%s)', connection.id, (packet.reasonCode ?? 0).toString(16))
  const session = connection.session
  const expiry = packet.properties?.sessionExpiryInterval
  if (expiry !== undefined && session !== null) {
    // Section 3.14.2.2.2: a session that was to end with the connection cannot be given a life now
    if (connection.sessionExpiryInterval === 0 && expiry !== 0) {
      return connection.protocolError('DISCONNECT sets a Session Expiry Interval after CONNECT had 0', ReasonCode.ProtocolError)
    }
    connection.sessionExpiryInterval = Math.min(expiry, connection.broker.limits.maxSessionExpiryInterval)
    session.expiryInterval = connection.sessionExpiryInterval
  }
  // [MQTT-3.1.2-10] [MQTT-3.14.4-3] a clean DISCONNECT discards the will; MQTT 5 reason 0x04 asks for it anyway
  if (packet.reasonCode !== ReasonCode.DisconnectWithWill) connection.will = undefined
  connection.end('disconnect')
}
