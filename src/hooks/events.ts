import type { ProtocolVersion, Subscription } from '../protocol/packets.js'
import type { Client, ConnectionInfo, DisconnectReason, Message } from './types.js'

/** A CONNECT the broker refused, as the `connectRefused` event reports it. */
export interface ConnectRefusal {
  /** The identifier the client asked for (empty when it sent none). */
  readonly clientId: string
  readonly username: string | undefined
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly transport: string
  readonly protocolVersion: ProtocolVersion
  /** The CONNACK code sent: a 3.1.1 return code (1 to 5) or an MQTT 5 reason code (0x80 and up). */
  readonly reasonCode: number
  /** Why, in words, as the log line says it. */
  readonly reason: string
}

/** The host's hooks, each named as in `BrokerOptions`. */
export type HookName = 'authenticate' | 'enhancedAuthenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeDeliver' | 'acceptConnection'

/** Where an exception from the host's own code came from, as the `hostError` event reports it. */
export type HostErrorSource =
  /** A hook threw or rejected; the client it was deciding about is closed (reason `'hook-error'`). */
  | { readonly kind: 'hook'; readonly hook: HookName; readonly clientId: string }
  /** A listener of a broker event threw or rejected; the other listeners still ran. */
  | { readonly kind: 'listener'; readonly event: string }
  /** A `broker.subscribe` handler threw or rejected. */
  | { readonly kind: 'subscriber'; readonly topicFilter: string }

/**
 * The broker's events and their listeners' arguments. Listen with `broker.on(event, listener)`;
 * only the broker emits them.
 */
// A type alias, not an interface: it is used as an index-compatible event map.
export type BrokerEvents = {
  /** A client completed CONNECT and was accepted. */
  clientConnect: (client: Client) => void
  /** A connected client went away, and why. */
  clientDisconnect: (client: Client, reason: DisconnectReason) => void
  /** A CONNECT was refused with a CONNACK code (bad credentials, invalid identifier, quota ...). */
  connectRefused: (refusal: ConnectRefusal) => void
  /**
   * A connection ended before its CONNECT was accepted, other than by a refusal or a quiet close:
   * its socket failed (`'socket-closed'`), it sent no CONNECT in time (`'connect-timeout'`), it broke
   * the protocol (`'protocol-error'`) or a hook threw (`'hook-error'`).
   */
  connectionError: (error: Error, connection: Readonly<ConnectionInfo>, reason: DisconnectReason) => void
  /** A message was published, by a client or by the host (`client` null). */
  publish: (message: Message, client: Client | null) => void
  /** A client subscribed; `subscriptions` carries the granted QoS (refused ones left out). */
  subscribe: (subscriptions: Subscription[], client: Client) => void
  /** A client unsubscribed. */
  unsubscribe: (topicFilters: string[], client: Client) => void
  /** A will message was published on behalf of a client that went away without DISCONNECT. */
  willPublish: (message: Message, client: Client) => void
  /** A connected client broke the protocol or its socket failed. */
  clientError: (client: Client, error: Error) => void
  /**
   * The host's own code threw or rejected (a hook, an event listener, a `broker.subscribe`
   * handler). The broker carries on. Without a listener for this event, the error is printed
   * to stderr, so a bug in the host is never silent.
   */
  hostError: (error: Error, source: HostErrorSource) => void
  /**
   * A commit to the persistence adapter failed. Nothing it covered was acknowledged: MQTT 5
   * clients got reason code 0x80, 3.1.1 clients were disconnected. The broker commits the same
   * changes again, with growing pauses, and acknowledges again once the store takes them.
   */
  persistenceError: (error: Error) => void
  /** An outgoing bridge (`broker.bridge`) connected to its remote broker. */
  bridgeUp: (name: string) => void
  /** An outgoing bridge lost its remote broker (or was closed); `error` says why, when known. Messages for it wait in its session. */
  bridgeDown: (name: string, error?: Error) => void
}
