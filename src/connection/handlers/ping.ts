import { log } from '../../logging.js'
import type { Connection } from '../connection.js'

export function handlePingreq(connection: Connection): void {
  if (log.packet.enabled) log.packet('Received PINGREQ from %s; sending PINGRESP', connection.id)
  connection.send({ type: 'pingresp' })
}
