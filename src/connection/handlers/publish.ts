import { isPromise } from '../../hooks/promise.js'
import { log } from '../../logging.js'
import type { PublishPacket } from '../../protocol/packets.js'
import { isValidTopicName } from '../../protocol/topics.js'
import { RoutedMessage } from '../../session/routed-message.js'
import type { Connection } from '../connection.js'

export function handlePublish(connection: Connection, packet: PublishPacket): void | Promise<void> {
  if (log.packet.enabled) {
    log.packet('Received PUBLISH from %s (d%d, q%d, r%d, m%d, %j, ... (%d bytes))', connection.id, packet.dup ? 1 : 0, packet.qos, packet.retain ? 1 : 0, packet.packetId, packet.topic, packet.payload.length)
  }
  // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] at least one character
  if (!isValidTopicName(packet.topic)) return connection.protocolError(`invalid topic name ${JSON.stringify(packet.topic)} in PUBLISH`)
  const session = connection.session
  if (session === null) return
  if (packet.qos === 2 && session.incomingQos2.has(packet.packetId)) {
    // [MQTT-4.3.3-2] a QoS 2 message already delivered and not yet released is not delivered again
    connection.send({ type: 'pubrec', packetId: packet.packetId })
    return
  }
  const message = new RoutedMessage(packet.topic, packet.payload, packet.qos, packet.retain)
  const authorize = connection.broker.authorizePublish
  if (authorize === undefined) return finish(connection, packet, message, true)
  const allowed = authorize(connection, message)
  if (isPromise(allowed)) return allowed.then((ok) => finish(connection, packet, message, ok))
  finish(connection, packet, message, allowed)
}

function finish(connection: Connection, packet: PublishPacket, message: RoutedMessage, allowed: boolean): void {
  if (connection.state === 'closed') return
  if (allowed) connection.flow.addWork(connection.broker.publish(message, connection))
  else log.auth('authorizePublish refused PUBLISH from %s to %j (q%d): dropped', connection.id, packet.topic, packet.qos)
  // A refused QoS 1/2 message is still acknowledged: 3.1.1 has no way to say no.
  if (packet.qos === 1) {
    connection.send({ type: 'puback', packetId: packet.packetId })
  } else if (packet.qos === 2) {
    const session = connection.session
    if (session !== null) {
      session.incomingQos2.add(packet.packetId)
      connection.broker.sessionChanged(session)
    }
    connection.send({ type: 'pubrec', packetId: packet.packetId })
  }
}
