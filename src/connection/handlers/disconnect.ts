import { log } from '../../logging.js'
import type { Connection } from '../connection.js'

export function handleDisconnect(connection: Connection): void {
  log.packet('Received DISCONNECT from %s', connection.id)
  // [MQTT-3.1.2-10] [MQTT-3.14.4-3] a clean DISCONNECT discards the will
  connection.will = undefined
  connection.close('disconnect')
}
