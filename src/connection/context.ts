import type {
  AuthenticateHook,
  EnhancedAuthenticateHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  Client,
  DisconnectReason,
  Message,
} from '../hooks/types.js'
import type { Capabilities, Limits } from '../options.js'
import type { Subscription, WillMessage } from '../protocol/packets.js'
import type { RoutedMessage } from '../session/routed-message.js'
import type { Session } from '../session/session.js'

/** The broker's events, as typed-emitter declares them. */
// A type alias, not an interface: typed-emitter needs an index-compatible event map.
export type BrokerEvents = {
  /** A client completed CONNECT and was accepted. */
  clientConnect: (client: Client) => void
  /** A connected client went away. */
  clientDisconnect: (client: Client, reason: DisconnectReason) => void
  /** A message was published, by a client or by the host (`client` null). */
  publish: (message: Message, client: Client | null) => void
  /** A client subscribed; `subscriptions` carries the granted QoS (refused ones left out). */
  subscribe: (subscriptions: Subscription[], client: Client) => void
  /** A client unsubscribed. */
  unsubscribe: (topicFilters: string[], client: Client) => void
  /** A will message was published on behalf of a client that went away without DISCONNECT. */
  willPublish: (message: Message, client: Client) => void
  /** A client broke the protocol or its socket failed. */
  clientError: (client: Client, error: Error) => void
}


/** What a connection needs from the broker it belongs to. */
export interface BrokerContext {
  readonly limits: Readonly<Limits>
  readonly capabilities: Readonly<Capabilities>
  readonly authenticate: AuthenticateHook | undefined
  readonly enhancedAuthenticate: EnhancedAuthenticateHook | undefined
  readonly authorizePublish: AuthorizePublishHook | undefined
  readonly authorizeSubscribe: AuthorizeSubscribeHook | undefined
  /** Network connections open now, connected or not. */
  readonly openConnections: number
  readonly sessions: ReadonlyMap<string, Session>
  /** A fresh client identifier for a client that sent an empty one. */
  assignClientId(): string
  /**
   * Starts a session for a client, ending or reusing the one it had [MQTT-3.1.2-4..6]. `persistent`
   * says whether it outlives the connection; `expiryInterval` for how long (seconds, MQTT 5).
   */
  openSession(clientId: string, cleanStart: boolean, persistent: boolean, expiryInterval: number): { session: Session; present: boolean }
  /** Ends a session: drops its subscriptions, queue and stored record. */
  endSession(session: Session): void
  /** Marks a persistent session for saving. */
  sessionChanged(session: Session): void
  /** Routes a message (and stores it when retained); returns how many subscribers it reached. */
  publish(message: RoutedMessage, from: Client | null): number
  /** Adds or replaces a session's subscription. */
  subscribe(session: Session, subscription: Subscription): void
  unsubscribe(session: Session, topicFilter: string): boolean
  /** Sends the retained messages matching a new subscription; returns how many (0 while an async adapter answers). */
  sendRetained(session: Session, subscription: Subscription): number
  /** Called once when a connection has ended. */
  connectionClosed(client: Client, session: Session | null, reason: DisconnectReason, will: WillMessage | undefined): void
  emit<E extends keyof BrokerEvents>(event: E, ...args: Parameters<BrokerEvents[E]>): void
}
