import type { Properties, QoS, Subscription, WillMessage } from '../protocol/packets.js'

/** A value, or a promise of it: the memory adapter answers at once, durable ones may not. */
export type Awaitable<T> = T | Promise<T>

/** A message as stored: plain data, so a durable adapter can serialize it. */
export interface StoredMessage {
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties?: Properties
  /** When the broker received it (ms since the epoch); its Message Expiry Interval counts from here. */
  receivedAt: number
}

/**
 * One change to what the broker keeps, as the broker makes it. An adapter applies them in order;
 * every operation is idempotent (applying one twice leaves the same state as once), so the broker
 * may commit a batch again when it could not learn whether an earlier attempt was applied.
 *
 * Vocabulary:
 * - a **session** is a persistent session, by client identifier;
 * - a **message** is stored once, under a `messageId` the broker assigns, and referenced by the
 *   deliveries of every session queue it enters; an adapter may forget a message no delivery
 *   refers to any more at the end of a batch (within a batch, a delivery to another session may
 *   take over a message after its last delivery was dequeued);
 * - a **delivery** is one message on its way to one session, by the session's `seq` number
 *   (increasing within a session; a new session starts again). It is queued, then sent (it has a
 *   packet identifier and waits for PUBACK or PUBREC), then received (PUBREC came; it waits for
 *   PUBCOMP), then removed (acknowledged, expired, dropped or handed to another member of its
 *   shared subscription). Only QoS 1 and 2 deliveries are stored.
 */
export type PersistenceOp =
  /** A new session, replacing everything stored for this client identifier (a clean start). */
  | { op: 'sessionCreate'; clientId: string; expiryInterval: number }
  /**
   * The session's expiry interval and, while no connection is attached, since when
   * (`disconnectedAt`, ms since the epoch; absent: a connection is attached). Its expiry counts
   * from `disconnectedAt` across restarts.
   */
  | { op: 'sessionUpdate'; clientId: string; expiryInterval: number; disconnectedAt?: number }
  /** The session ends: its subscriptions, deliveries, incoming QoS 2 identifiers and will go too. */
  | { op: 'sessionDelete'; clientId: string }
  /** Adds a subscription, or replaces the one with the same topic filter (shared ones keep their '$share/{name}/' prefix). */
  | { op: 'subscribe'; clientId: string; subscription: Subscription }
  | { op: 'unsubscribe'; clientId: string; topicFilter: string }
  /** Stores a message once; deliveries refer to it by `messageId`. */
  | { op: 'message'; messageId: number; message: StoredMessage }
  /**
   * A delivery joins the end of the session's queue. `retain` is the RETAIN flag it is sent with;
   * `subscriptionIds` the MQTT 5 Subscription Identifiers it carries; `shareGroup` the shared
   * subscription ('$share/{name}/{filter}') it came through.
   */
  | {
      op: 'enqueue'
      clientId: string
      seq: number
      messageId: number
      qos: 1 | 2
      retain: boolean
      subscriptionIds?: number[]
      shareGroup?: string
    }
  /** The delivery was sent with `packetId` and waits for PUBACK (QoS 1) or PUBREC (QoS 2). */
  | { op: 'sent'; clientId: string; seq: number; packetId: number }
  /** PUBREC came for the delivery: it now waits for PUBCOMP, and PUBREL is what gets re-sent. */
  | { op: 'received'; clientId: string; seq: number }
  /** The delivery is over: acknowledged, expired, dropped, refused, or given to another shared-subscription member. */
  | { op: 'dequeue'; clientId: string; seq: number }
  /** An incoming QoS 2 PUBLISH was accepted (PUBREC); a resent one with this packet identifier is not delivered again. */
  | { op: 'qos2Received'; clientId: string; packetId: number }
  /** PUBREL released an incoming QoS 2 packet identifier. */
  | { op: 'qos2Released'; clientId: string; packetId: number }
  /**
   * The session's will: set at CONNECT while its connection is open (no `publishAt`), due at
   * `publishAt` (ms since the epoch) once the connection ended without DISCONNECT, or gone
   * (`will: null`: published, cancelled, or the client disconnected normally).
   */
  | { op: 'will'; clientId: string; will: WillMessage | null; publishAt?: number }
  /** The retained message of `message.topic`, replacing the previous one. */
  | { op: 'retain'; message: StoredMessage }
  /**
   * Removes the retained message of `topic`; with `receivedAt`, only if the stored one is that
   * message (an expired message must not take a newer one with it).
   */
  | { op: 'unretain'; topic: string; receivedAt?: number }

/** Where a restored delivery stands: waiting in the queue, sent and waiting for PUBACK/PUBREC, or waiting for PUBCOMP. */
export type DeliveryState = 'queued' | 'sent' | 'received'

/** A delivery as restored: the message and what the `enqueue`, `sent` and `received` operations said about it. */
export interface RestoredDelivery {
  seq: number
  messageId: number
  message: StoredMessage
  qos: 1 | 2
  retain: boolean
  subscriptionIds?: number[]
  shareGroup?: string
  state: DeliveryState
  /** Set once sent. */
  packetId?: number
}

/** A persistent session as the operations left it. */
export interface RestoredSession {
  clientId: string
  expiryInterval: number
  /** Since when no connection was attached; absent if one was when the store was last written. */
  disconnectedAt?: number
  subscriptions: Subscription[]
  /** Its deliveries in `seq` order. */
  deliveries: RestoredDelivery[]
  /** Incoming QoS 2 packet identifiers received and not released. */
  incomingQos2: number[]
  will?: { message: WillMessage; publishAt?: number }
}

/** Everything a broker starts from. */
export interface RestoredState {
  sessions: RestoredSession[]
  retained: StoredMessage[]
  /** The highest message identifier the store has used, if it knows; the broker's next ones are higher. */
  lastMessageId?: number
}

/**
 * Where the broker keeps what must outlive a connection and a restart: persistent sessions (with
 * their subscriptions, queues, in-flight state and wills) and retained messages. The broker keeps
 * live state in memory; it reads the store once at start (`open`) and then hands over every change
 * as operations, in one ordered batch per event-loop turn (`commit`).
 *
 * The contract:
 * - `commit` applies a batch atomically (all of it or nothing) and in order, after every batch
 *   committed before it. The broker never calls `commit` again before the previous call settled.
 * - A `durable` adapter's `commit` resolves only once the batch will survive what the adapter
 *   promises to survive (a crash of the process, at least). The broker sends an acknowledgement
 *   (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, CONNACK) only after the commit holding the
 *   operations it vouches for resolved.
 * - A `commit` that throws or rejects stored nothing (or, if the adapter cannot tell, possibly
 *   everything: operations are idempotent). The broker acknowledges nothing it covered and
 *   commits the same operations again, followed by the newer ones, until the store takes them.
 * - `open` is called before any `commit`, `close` after the last. A broker started later on the
 *   same adapter (after `close`) calls `open` again and must find everything committed.
 *
 * Test an adapter with the conformance suite: `persistenceConformance` from `culex-mqtt/testing`.
 */
export interface PersistenceAdapter {
  /**
   * Whether commits survive the process: acknowledgements then wait for them. False (the memory
   * adapter): nothing waits, and a crash loses everything anyway, so the broker does not tell the
   * adapter about each delivery as it happens (`enqueue`, `sent`, `received`, `dequeue`): it
   * writes every persistent session whole (from `sessionCreate` on) when it closes.
   */
  readonly durable: boolean
  /** Reads what the store holds, once, when the broker starts. */
  open(): Awaitable<RestoredState>
  /** Applies a batch of operations atomically and in order. */
  commit(ops: readonly PersistenceOp[]): Awaitable<void>
  /** Releases resources; called by `broker.close()` after the last commit. */
  close(): Awaitable<void>
}
