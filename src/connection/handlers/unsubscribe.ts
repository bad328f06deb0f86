import { log } from '../../logging.js'
import type { UnsubscribePacket } from '../../protocol/packets.js'
import { ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'
import { problemProperties } from '../problem.js'

export function handleUnsubscribe(connection: Connection, packet: UnsubscribePacket): void {
  const session = connection.session
  if (session === null) return
  if (log.packet.enabled) log.packet('Received UNSUBSCRIBE from %s: %j', connection.id, packet.topicFilters)
  const removed = packet.topicFilters.map((filter) => connection.broker.unsubscribe(session, filter))
  // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK even when nothing matched; MQTT 5 says which did, one code per filter
  if (connection.protocolVersion === 5) {
    const reasonCodes = removed.map((r) => (r ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted))
    const properties = problemProperties(connection.requestProblemInformation, reasonCodes)
    connection.send(properties ? { type: 'unsuback', packetId: packet.packetId, reasonCodes, properties } : { type: 'unsuback', packetId: packet.packetId, reasonCodes })
  } else {
    connection.send({ type: 'unsuback', packetId: packet.packetId })
  }
  connection.broker.emit('unsubscribe', packet.topicFilters, connection)
}
