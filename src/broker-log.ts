import type { BrokerEvents, ConnectRefusal, HostErrorSource } from './hooks/events.js'
import type { Client, ConnectionInfo, DisconnectReason, Message } from './hooks/types.js'
import type { Logger } from './options.js'

/** The fields that identify a client in a log line. */
function clientFields(client: Client): Record<string, unknown> {
  return { clientId: client.id, username: client.username, remoteAddress: client.remoteAddress, transport: client.transport }
}

/**
 * Writes the broker's lifecycle events to a host's pino-shaped logger, with the client's id in
 * the line's fields (`logger.child({ clientId })`), as Mosquitto logs them: connections,
 * refusals and their CONNACK codes, disconnects and why, wills, failures. Per-packet tracing
 * stays with `DEBUG=culex:packet`.
 */
export class BrokerLog {
  constructor(private readonly logger: Logger) {}

  /** A line of the broker's own (listeners, drain, bans). */
  info(message: string, fields: Record<string, unknown> = {}): void {
    this.logger.info(fields, message)
  }

  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.logger.warn(fields, message)
  }

  /** One broker event, before its listeners run. */
  event(event: keyof BrokerEvents, args: readonly unknown[]): void {
    switch (event) {
      case 'clientConnect': {
        const client = args[0] as Client
        this.logger.child({ clientId: client.id }).info(
          { ...clientFields(client), protocolVersion: client.protocolVersion, cleanSession: client.cleanSession, keepAlive: client.keepAlive },
          'client connected',
        )
        return
      }
      case 'clientDisconnect': {
        const client = args[0] as Client
        const reason = args[1] as DisconnectReason
        this.logger.child({ clientId: client.id }).info({ ...clientFields(client), reason }, 'client disconnected')
        return
      }
      case 'connectRefused': {
        const refusal = args[0] as ConnectRefusal
        this.logger.child({ clientId: refusal.clientId }).warn({ ...refusal }, `connection refused: ${refusal.reason}`)
        return
      }
      case 'connectionError': {
        const [error, info, reason] = args as [Error, ConnectionInfo, DisconnectReason]
        this.logger.debug({ remoteAddress: info.remoteAddress, transport: info.transport, reason, err: error.message }, 'connection failed before CONNECT completed')
        return
      }
      case 'clientError': {
        const [client, error] = args as [Client, Error]
        this.logger.child({ clientId: client.id }).warn({ ...clientFields(client), err: error.message }, 'client error')
        return
      }
      case 'willPublish': {
        const [message, client] = args as [Message, Client]
        this.logger.child({ clientId: client.id }).info({ topic: message.topic, qos: message.qos, retain: message.retain }, 'will published')
        return
      }
      case 'hostError': {
        const [error, source] = args as [Error, HostErrorSource]
        this.logger.error({ err: error.stack ?? error.message, source }, 'host code failed')
        return
      }
      case 'persistenceError': {
        const error = args[0] as Error
        this.logger.error({ err: error.message }, 'persistence commit failed')
        return
      }
      default:
        // publish, subscribe, unsubscribe: per-message traffic, left to DEBUG=culex:packet.
        return
    }
  }
}
