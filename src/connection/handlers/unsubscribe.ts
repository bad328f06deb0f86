import { log } from '../../logging.js'
import type { UnsubscribePacket } from '../../protocol/packets.js'
import { ReasonCode } from '../../protocol/reason-codes.js'
import type { Connection } from '../connection.js'
import { problemProperties } from '../problem.js'

export function handleUnsubscribe(connection: Connection, packet: UnsubscribePacket): void {
  const session = connection.session
  if (session === null) return
  if (log.packet.enabled) log.packet('Received UNSUBSCRIBE from %s: %j', connection.id, packet.topicFilters)
  const mark = connection.broker.journal.recorded
  const removed = packet.topicFilters.map((filter) => connection.broker.unsubscribe(session, filter))
  const unsuback = (codes: number[] | undefined): void => {
    if (codes === undefined) return connection.send({ type: 'unsuback', packetId: packet.packetId })
    const properties = problemProperties(connection.requestProblemInformation, codes)
    connection.send(properties ? { type: 'unsuback', packetId: packet.packetId, reasonCodes: codes, properties } : { type: 'unsuback', packetId: packet.packetId, reasonCodes: codes })
  }
  const v5 = connection.protocolVersion === 5
  connection.afterCommit(
    mark,
    () => {
      // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK even when nothing matched; MQTT 5 says which did, one code per filter
      unsuback(v5 ? removed.map((r) => (r ? ReasonCode.Success : ReasonCode.NoSubscriptionExisted)) : undefined)
      connection.broker.emit('unsubscribe', packet.topicFilters, connection)
    },
    () => {
      // The subscriptions are gone from this run; the store will be told again when it returns.
      if (v5) unsuback(removed.map(() => ReasonCode.UnspecifiedError))
      else connection.storeFailed('an UNSUBSCRIBE')
    },
  )
}
