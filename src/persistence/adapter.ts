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
  /** When the broker received it (ms since the epoch). */
  receivedAt: number
}

/** An outgoing QoS 1/2 message sent to a client and not yet fully acknowledged. */
export interface StoredInflight {
  packetId: number
  qos: 1 | 2
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREC received, waiting for PUBCOMP. */
  state: 'publish' | 'pubrel'
  message: StoredMessage
}

/** Everything a persistent session (clean session 0) must keep across connections and restarts. */
export interface SessionRecord {
  clientId: string
  subscriptions: Subscription[]
  /** Messages waiting to be sent, oldest first. */
  queue: StoredMessage[]
  inflight: StoredInflight[]
  /** Incoming QoS 2 packet identifiers received and not yet released by PUBREL. */
  incomingQos2: number[]
  /** The will of a connection that is still open, so a restarted broker can still publish it. */
  will?: WillMessage
  /** Seconds the session outlives its connection; absent or 0xFFFFFFFF: for ever. */
  expiryInterval?: number
}

/**
 * Where the broker keeps what must outlive a connection. The broker holds live session state in
 * memory and saves a session's record whenever it changes (batched), so an adapter sees whole
 * records; retained messages live only in the adapter. Every method may return a Promise.
 */
export interface PersistenceAdapter {
  /** Stores a retained message, replacing the topic's previous one; an empty payload deletes it. */
  storeRetained(message: StoredMessage): Awaitable<void>
  /** The retained messages whose topics match a topic filter ('+' and '#', with the '$' rule). */
  matchRetained(topicFilter: string): Awaitable<StoredMessage[]>
  /** Saves (creates or replaces) a persistent session. */
  saveSession(record: SessionRecord): Awaitable<void>
  /** Removes a session; unknown ids are ignored. */
  deleteSession(clientId: string): Awaitable<void>
  /** Every stored session, read once when the broker starts. */
  loadSessions(): Awaitable<SessionRecord[]>
  /** Flushes and releases resources; called by `broker.close()`. */
  close(): Awaitable<void>
}
