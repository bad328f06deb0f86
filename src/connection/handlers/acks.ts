import { log } from '../../logging.js'
import type { AckPacket } from '../../protocol/packets.js'
import { ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'
import { problemProperties } from '../problem.js'

/** PUBACK, PUBREC, PUBCOMP for messages we sent; PUBREL for QoS 2 messages we received. */
export function handleAck(connection: Connection, packet: AckPacket): void {
  const session = connection.session
  if (session === null) return
  const id = packet.packetId
  const v5 = connection.protocolVersion === 5
  if (log.packet.enabled) log.packet('Received %s from %s (m%d)', packet.type.toUpperCase(), connection.id, id)
  switch (packet.type) {
    case 'puback':
    case 'pubcomp':
      session.complete(id, packet.type)
      break
    case 'pubrec': {
      if (v5 && (packet.reasonCode ?? 0) >= 0x80) {
        // MQTT 5: a PUBREC with an error code ends the exchange; no PUBREL follows [MQTT-4.3.3-4]
        session.refused(id)
        break
      }
      // [MQTT-4.3.3-1] answer PUBREC with PUBREL, even for an identifier we no longer hold
      const known = session.received(id)
      connection.send(v5 && !known ? notFound('pubrel', id, connection.requestProblemInformation) : { type: 'pubrel', packetId: id })
      break
    }
    case 'pubrel': {
      // [MQTT-4.3.3-2] PUBREL releases the identifier; PUBCOMP answers it, known or not
      const known = session.incomingQos2.delete(id)
      if (known) connection.broker.sessionChanged(session)
      connection.send(v5 && !known ? notFound('pubcomp', id, connection.requestProblemInformation) : { type: 'pubcomp', packetId: id })
      break
    }
  }
}

/** MQTT 5 PUBREL/PUBCOMP for a packet identifier the broker does not hold (0x92). */
function notFound(type: 'pubrel' | 'pubcomp', packetId: number, requestProblemInformation: boolean): AckPacket {
  const properties = problemProperties(requestProblemInformation, [ReasonCode.PacketIdentifierNotFound])
  return properties ? { type, packetId, reasonCode: ReasonCode.PacketIdentifierNotFound, properties } : { type, packetId, reasonCode: ReasonCode.PacketIdentifierNotFound }
}
