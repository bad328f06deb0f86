import { log } from '../../logging.js'
import type { AckPacket } from '../../protocol/packets.js'
import type { Connection } from '../connection.js'

/** PUBACK, PUBREC, PUBCOMP for messages we sent; PUBREL for QoS 2 messages we received. */
export function handleAck(connection: Connection, packet: AckPacket): void {
  const session = connection.session
  if (session === null) return
  const id = packet.packetId
  if (log.packet.enabled) log.packet('Received %s from %s (m%d)', packet.type.toUpperCase(), connection.id, id)
  switch (packet.type) {
    case 'puback':
    case 'pubcomp':
      session.complete(id, packet.type)
      break
    case 'pubrec':
      // [MQTT-4.3.3-1] answer PUBREC with PUBREL, even for an identifier we no longer hold
      session.received(id)
      connection.send({ type: 'pubrel', packetId: id })
      break
    case 'pubrel':
      // [MQTT-4.3.3-2] PUBREL releases the identifier; PUBCOMP answers it, known or not
      if (session.incomingQos2.delete(id)) connection.broker.sessionChanged(session)
      connection.send({ type: 'pubcomp', packetId: id })
      break
  }
}
