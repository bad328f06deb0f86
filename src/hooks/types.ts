import type { IncomingMessage } from 'node:http'
import type { Properties, ProtocolVersion, QoS, Subscription } from '../protocol/packets.js'

/** What a verified TLS client certificate says about its holder. */
export interface PeerCertificate {
  /** The certificate subject, e.g. `{ CN: 'device-42', O: 'Acme' }`. */
  subject: Record<string, string | string[] | undefined>
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256: string
}

/** An application message, as published by a client or by the host application. */
export interface Message {
  readonly topic: string
  /** Shared with every subscriber and hook: read it, do not write to it. */
  readonly payload: Buffer
  readonly qos: QoS
  readonly retain: boolean
  /** MQTT 5 properties, when the publisher sent any. */
  readonly properties?: Properties
}

/** What a transport knows about a new connection. Every field is optional: `broker.handle(stream)` may know none. */
export interface ConnectionInfo {
  /** The peer's address (for a trusted proxy: the address the proxy reported). */
  remoteAddress?: string | undefined
  remotePort?: number | undefined
  /** The verified TLS client certificate, when the transport asked for one. */
  certificate?: PeerCertificate | undefined
  /** The transport's name for log lines and hooks: 'tcp', 'tls', 'ws', 'unix', ... Default 'stream'. */
  transport?: string | undefined
  /**
   * For MQTT over WebSocket: the HTTP upgrade request, with its headers (cookies, Authorization)
   * and URL (query string), so `authenticate` can use the browser's credentials.
   */
  request?: IncomingMessage | undefined
}

/** What the host application sees of a connected client. */
export interface Client {
  /** The client identifier (assigned by the broker when the client sent an empty one). */
  readonly id: string
  readonly username: string | undefined
  /** The peer address as the transport reported it, when known. */
  readonly remoteAddress: string | undefined
  /** The peer port, when known. */
  readonly remotePort: number | undefined
  /** The transport the client came through: 'tcp', 'tls', 'ws', 'unix', or 'stream' for `broker.handle`. */
  readonly transport: string
  /** The verified TLS client certificate, on a `tls` listener that asked for one. */
  readonly certificate: PeerCertificate | undefined
  /** MQTT over WebSocket: the HTTP upgrade request (headers, cookies, URL with its query). */
  readonly request: IncomingMessage | undefined
  readonly protocolVersion: ProtocolVersion
  readonly cleanSession: boolean
  /** The keep alive in force, in seconds (0 = disabled). */
  readonly keepAlive: number
  /** Whether the network connection is still open. */
  readonly connected: boolean
  /**
   * Whether the client is another broker's bridge: it said so with protocol level 0x83/0x84 (a
   * Mosquitto bridge's `try_private`), and its subscriptions are No Local and Retain As Published.
   */
  readonly bridge: boolean
  /**
   * Closes the connection (publishing the will, as for any ungraceful end). An MQTT 5 client is
   * first sent DISCONNECT with `reasonCode` (default 0x98, administrative action), e.g. 0x97 when
   * the host enforces a quota of its own, or 0x9C/0x9D to send it elsewhere.
   */
  close(reasonCode?: number, reasonString?: string): void
  /** The fields above as plain data (what `JSON.stringify(client)` gives; `request` left out). */
  toJSON(): ClientSummary
}

/** A client's documented fields as plain data. */
export type ClientSummary = Omit<Client, 'close' | 'toJSON' | 'request'>

/** What `authenticate` is asked about. */
export interface AuthenticateRequest {
  clientId: string
  username: string | undefined
  password: Buffer | undefined
  remoteAddress: string | undefined
  remotePort: number | undefined
  protocolVersion: ProtocolVersion
  /** The transport the client came through: 'tcp', 'tls', 'ws', 'unix', or 'stream' for `broker.handle`. */
  transport: string
  /** The verified TLS client certificate, on a `tls` listener that asked for one. */
  certificate: PeerCertificate | undefined
  /**
   * MQTT over WebSocket: the HTTP upgrade request, so a browser's session cookie, `Authorization`
   * header or `?token=` can be checked. Undefined on other transports.
   */
  request: IncomingMessage | undefined
}

/**
 * `true` accepts; `false` refuses as "bad user name or password" (3.1.1 return code 4);
 * `{ reasonCode }` refuses with that CONNACK code (e.g. 5, not authorized).
 */
export type AuthenticateResult = boolean | { reasonCode: number; reasonString?: string }

/** Decides whether a client may connect. May be async. */
export type AuthenticateHook = (request: AuthenticateRequest) => AuthenticateResult | Promise<AuthenticateResult>

/**
 * Decides whether a client may publish a message (wills included): `true` allows, `false`
 * refuses. For MQTT 5 clients a reason code of 0x80 or more refuses with that PUBACK/PUBREC code
 * (e.g. 0x87 not authorized, 0x97 quota exceeded; `false` means 0x87). A refused QoS 1/2 message is
 * still acknowledged (3.1.1 cannot say no), then dropped. May be async.
 */
export type AuthorizePublishHook = (client: Client, message: Message) => boolean | number | Promise<boolean | number>

/**
 * Decides a subscription: `false` refuses it (SUBACK 0x80, for both versions), `true` grants the
 * requested QoS, a QoS (0, 1, 2) grants at most that, and for MQTT 5 clients a reason code of 0x80
 * or more refuses with that SUBACK code. May be async.
 */
export type AuthorizeSubscribeHook = (
  client: Client,
  subscription: Subscription,
) => boolean | QoS | number | Promise<boolean | QoS | number>

/**
 * Decides whether one subscriber may receive one message, as Mosquitto checks READ access per
 * delivered message and Aedes' `authorizeForward` does: `false` drops it for that client alone
 * (counted as dropped, reason `not_authorized`). Called for every message routed to a client's
 * session and for every retained message a new subscription would send, so it must be
 * synchronous and cheap. `client` may be offline (a persistent session): its `connected` is
 * false and, for a session restored from the store, its `username` is unknown (undefined) until
 * the client connects again.
 */
export type AuthorizeDeliverHook = (client: Client, message: Message) => boolean

/** A new network connection as the `acceptConnection` hook sees it, before TLS, WebSocket or CONNECT. */
export interface AcceptRequest {
  /** The peer's address (for a trusted proxy: the address the proxy reported). */
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  /** The transport's name: 'tcp', 'tls', 'ws', 'unix', ... */
  readonly transport: string
}

/**
 * Decides at accept, before a TLS handshake, a WebSocket upgrade or a CONNECT is read, whether a
 * new connection is served: `false` closes it at once (counted as refused, reason `host`). Runs
 * after the broker's own bans and per-IP limits. Synchronous: it runs for every socket.
 */
export type AcceptConnectionHook = (request: AcceptRequest) => boolean

/**
 * Why a connection ended, as `clientDisconnect` (and `connectionError`) report it:
 * - `'disconnect'`: the client sent DISCONNECT;
 * - `'socket-closed'`: the network connection closed or failed without DISCONNECT;
 * - `'keep-alive-timeout'`: nothing arrived for 1.5 times the keep alive;
 * - `'connect-timeout'`: no CONNECT within `limits.connectTimeoutMs`;
 * - `'protocol-error'`: the client broke the protocol (malformed or forbidden packet);
 * - `'hook-error'`: the host's own hook threw or rejected (see the `hostError` event);
 * - `'internal-error'`: the broker failed (a bug: please report it);
 * - `'taken-over'`: another connection with the same client identifier took the session;
 * - `'server-closing'`: `broker.close()`;
 * - `'closed-by-host'`: the host called `client.close()`;
 * - `'connect-refused'`: the CONNECT was refused with a CONNACK code;
 * - `'persistence-error'`: the store failed to keep what an acknowledgement would have promised
 *   (MQTT 5: DISCONNECT 0x80); see the `persistenceError` event.
 */
export type DisconnectReason =
  | 'disconnect'
  | 'socket-closed'
  | 'keep-alive-timeout'
  | 'connect-timeout'
  | 'protocol-error'
  | 'hook-error'
  | 'internal-error'
  | 'taken-over'
  | 'server-closing'
  | 'closed-by-host'
  | 'connect-refused'
  | 'persistence-error'

/** A session as `broker.getSession` reports it: a snapshot, not updated. */
export interface SessionSummary {
  readonly clientId: string
  /** Whether it outlives its connection (clean session 0, or an MQTT 5 Session Expiry Interval above 0). */
  readonly persistent: boolean
  /** Whether a client is connected to it now. */
  readonly connected: boolean
  /** Seconds it outlives its connection (0xFFFFFFFF: for ever). */
  readonly expiryInterval: number
  readonly subscriptions: number
  /** QoS 1/2 messages sent and not yet acknowledged. */
  readonly inflight: number
  /** Messages waiting to be sent, and their bytes (payload and topic). */
  readonly queued: number
  readonly queuedBytes: number
  /** Messages dropped so far: queue full (`maxQueued`, `maxQueuedBytes`), QoS 0 to a congested or offline client, too large for the client. */
  readonly dropped: number
}

/** One step of an MQTT 5 enhanced authentication exchange (CONNECT, then AUTH packets). */
export interface EnhancedAuthRequest {
  /** The client's Authentication Method, e.g. 'SCRAM-SHA-256'. */
  method: string
  /** The client's Authentication Data for this step, if it sent any. */
  data: Buffer | undefined
  clientId: string
  username: string | undefined
  /** What the previous step returned as `state`; undefined on the first step. */
  state: unknown
  /** True when a connected client asked to re-authenticate (AUTH 0x19). */
  reauthenticate: boolean
}

/**
 * The answer to a step: `{ continue }` sends the client AUTH 0x18 with that data and waits for its
 * next step (`state` comes back in the next request); `{ success }` completes (CONNACK 0, or AUTH
 * 0x00 on re-authentication) with optional final data; `{ reasonCode }` refuses (CONNACK, or
 * DISCONNECT on re-authentication), e.g. 0x86 bad credentials, 0x8C unknown method.
 */
export type EnhancedAuthResult =
  | { continue: Buffer | undefined; state?: unknown }
  | { success: true; data?: Buffer }
  | { reasonCode: number; reasonString?: string }

/** Runs MQTT 5 enhanced authentication, one step per call. May be async. */
export type EnhancedAuthenticateHook = (request: EnhancedAuthRequest) => EnhancedAuthResult | Promise<EnhancedAuthResult>
