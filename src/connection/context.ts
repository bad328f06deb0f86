import type { ClusterClaims } from '../cluster/claims.js'
import type {
  AuthenticateHook,
  EnhancedAuthenticateHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  Client,
  DisconnectReason,
} from '../hooks/types.js'
import type { BrokerEvents } from '../hooks/events.js'
import type { Capabilities, Limits } from '../options.js'
import type { Counters } from '../metrics/counters.js'
import type { Protection } from '../protection/protection.js'
import type { Journal } from '../persistence/journal.js'
import type { Subscription, WillMessage } from '../protocol/packets.js'
import type { RoutedMessage } from '../session/routed-message.js'
import type { Session } from '../session/session.js'
import type { Wills } from '../session/wills.js'
import type { Connection } from './connection.js'

/** What a connection needs from the broker it belongs to. */
export interface BrokerContext {
  readonly limits: Readonly<Limits>
  /** Running totals (stats, $SYS, metrics): plain increments. */
  readonly counters: Counters
  /** Bans, per-IP limits, flapping detection. */
  readonly protection: Protection
  readonly capabilities: Readonly<Capabilities>
  readonly authenticate: AuthenticateHook | undefined
  readonly enhancedAuthenticate: EnhancedAuthenticateHook | undefined
  readonly authorizePublish: AuthorizePublishHook | undefined
  readonly authorizeSubscribe: AuthorizeSubscribeHook | undefined
  /** Network connections open now, connected or not. */
  readonly openConnections: number
  readonly sessions: ReadonlyMap<string, Session>
  /** Connected clients (past CONNACK) by client identifier. */
  readonly clients: ReadonlyMap<string, Connection>
  /** A fresh client identifier for a client that sent an empty one. */
  assignClientId(): string
  /** Records that `connection` sent a CONNECT for its client identifier (the newest one wins). */
  connectStarted(connection: Connection): void
  /** Whether no CONNECT with the same client identifier arrived after `connection`'s. */
  isLatestConnect(connection: Connection): boolean
  /** `connection` was accepted: it is the client with its identifier now. */
  clientAccepted(connection: Connection): void
  /**
   * Starts a session for a client, ending or reusing the one it had [MQTT-3.1.2-4..6]. `persistent`
   * says whether it outlives the connection; `expiryInterval` for how long (seconds, MQTT 5).
   */
  openSession(clientId: string, cleanStart: boolean, persistent: boolean, expiryInterval: number): { session: Session; present: boolean }
  /** Ends a session: drops its subscriptions, queue and stored record. */
  endSession(session: Session): void
  /**
   * A session opened for a connection that never got its CONNACK: left as if that connection had
   * come and gone, without publishing its will.
   */
  sessionAbandoned(session: Session, connection: Connection): void
  /** Where state changes go to the store; acknowledgements wait for its commits. */
  readonly journal: Journal
  /** Cluster mode: this node's part in the cluster. */
  readonly cluster: ClusterClaims | undefined
  /** Whether the deletion of this client's stored session (a clean start, an expiry) is not committed yet. */
  deletionPending(clientId: string): boolean
  /** The lifecycle of wills. */
  readonly wills: Wills
  /** Holds an incoming QoS 2 identifier until PUBREL (stored for persistent sessions). */
  qos2Received(session: Session, packetId: number): void
  /** Releases an incoming QoS 2 identifier; false if it was not held. */
  qos2Released(session: Session, packetId: number): boolean
  /** Routes a client's message (and stores it when retained); returns how many subscribers it reached. */
  publish(message: RoutedMessage, from: Client, session: Session | null): number
  /** Adds or replaces a session's subscription. */
  subscribe(session: Session, subscription: Subscription): void
  unsubscribe(session: Session, topicFilter: string): boolean
  /** Sends the retained messages matching a new subscription, under flow control; returns how many went at once. */
  sendRetained(session: Session, subscription: Subscription): number
  /** Called once when a connection has ended. */
  connectionClosed(connection: Connection, session: Session | null, reason: DisconnectReason, will: WillMessage | undefined): void
  emit<E extends keyof BrokerEvents>(event: E, ...args: Parameters<BrokerEvents[E]>): void
}
