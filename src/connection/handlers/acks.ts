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
      const mark = connection.broker.journal.recorded
      const known = session.received(id)
      const pubrel = v5 && !known ? notFound('pubrel', id, connection.requestProblemInformation) : ({ type: 'pubrel', packetId: id } as const)
      // PUBREL only once the PUBREC state is stored: after a crash the broker must re-send PUBREL, not the message.
      connection.afterCommit(mark, () => connection.send(pubrel), () => connection.storeFailed('a PUBREC'))
      break
    }
    case 'pubrel': {
      // [MQTT-4.3.3-2] PUBREL releases the identifier; PUBCOMP answers it, known or not
      const mark = connection.broker.journal.recorded
      const known = connection.broker.qos2Released(session, id)
      const pubcomp = v5 && !known ? notFound('pubcomp', id, connection.requestProblemInformation) : ({ type: 'pubcomp', packetId: id } as const)
      // PUBCOMP only once the release is stored: a release lost in a crash would drop the next message that reuses the identifier.
      connection.afterCommit(mark, () => connection.send(pubcomp), () => connection.storeFailed('a PUBREL'))
      break
    }
  }
}

/** MQTT 5 PUBREL/PUBCOMP for a packet identifier the broker does not hold (0x92). */
function notFound(type: 'pubrel' | 'pubcomp', packetId: number, requestProblemInformation: boolean): AckPacket {
  const properties = problemProperties(requestProblemInformation, [ReasonCode.PacketIdentifierNotFound])
  return properties ? { type, packetId, reasonCode: ReasonCode.PacketIdentifierNotFound, properties } : { type, packetId, reasonCode: ReasonCode.PacketIdentifierNotFound }
}
