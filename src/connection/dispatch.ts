import type { Packet } from '../protocol/packets.js'
import type { Connection } from './connection.js'
import { handleAck } from './handlers/acks.js'
import { handleAuth } from './handlers/auth.js'
import { handleConnect } from './handlers/connect.js'
import { handleDisconnect } from './handlers/disconnect.js'
import { handlePingreq } from './handlers/ping.js'
import { handlePublish } from './handlers/publish.js'
import { handleSubscribe } from './handlers/subscribe.js'
import { handleUnsubscribe } from './handlers/unsubscribe.js'

/** Hands a decoded packet to its handler; returns a promise only when a hook went async. */
export function dispatch(connection: Connection, packet: Packet): void | Promise<void> {
  if (connection.state === 'awaiting-connect') {
    // [MQTT-3.1.0-1] the first packet must be CONNECT
    if (packet.type !== 'connect') return connection.protocolError(`first packet is ${packet.type.toUpperCase()}, not CONNECT`)
    return handleConnect(connection, packet)
  }
  if (connection.state === 'connecting' && packet.type !== 'auth' && packet.type !== 'disconnect') {
    // Only AUTH (or DISCONNECT) may come while an enhanced authentication exchange runs (section 4.12)
    return connection.protocolError(`${packet.type.toUpperCase()} before authentication completed`)
  }
  switch (packet.type) {
    case 'auth':
      return handleAuth(connection, packet)
    case 'publish':
      return handlePublish(connection, packet)
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return handleAck(connection, packet)
    case 'subscribe':
      return handleSubscribe(connection, packet)
    case 'unsubscribe':
      return handleUnsubscribe(connection, packet)
    case 'pingreq':
      return handlePingreq(connection)
    case 'disconnect':
      return handleDisconnect(connection, packet)
    case 'connect':
      // [MQTT-3.1.0-2] a second CONNECT is a protocol violation
      return connection.protocolError('second CONNECT')
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP, AUTH are never sent by a client.
      return connection.protocolError(`unexpected ${packet.type.toUpperCase()} from a client`)
  }
}
