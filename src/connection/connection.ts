import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { inspect, type InspectOptionsStylized } from 'node:util'
import { asError, HookError } from '../hooks/errors.js'
import type { Client, ClientSummary, ConnectionInfo, DisconnectReason, PeerCertificate } from '../hooks/types.js'
import { log } from '../logging.js'
import { DecodeError, PacketDecoder } from '../protocol/decoder.js'
import { encodePacket, publishPacketIdOffset, setPacketId } from '../protocol/encoder.js'
import type { ConnectPacket, Packet, Properties, ProtocolVersion, QoS, WillMessage } from '../protocol/packets.js'
import { ConnackReturnCode, ReasonCode } from '../protocol/reason-codes.js'
import { COPIED_PACKET_MAX, type RoutedMessage, type TopicAliasUse } from '../session/routed-message.js'
import type { Session, SessionLink } from '../session/session.js'
import type { BrokerContext } from './context.js'

export type { ConnectionInfo }
import { dispatch } from './dispatch.js'
import { InboundFlow } from './inbound-flow.js'
import { KeepAlive } from './keep-alive.js'
import { OutputBuffer } from './output-buffer.js'
import { RateBucket } from './rate-bucket.js'



/** Topics shorter than this are sent as they are: the alias property (3 bytes) would save nothing. */
const ALIAS_MIN_TOPIC_LENGTH = 4

/** Payload size above which QoS 1/2 subscribers share the payload bytes instead of each copying the packet. */
const SHARED_PAYLOAD_MIN = 512

/** The DISCONNECT reason code an MQTT 5 client gets for each way the broker ends its connection. */
const DISCONNECT_CODES: Partial<Record<DisconnectReason, number>> = {
  'keep-alive-timeout': ReasonCode.KeepAliveTimeout,
  'hook-error': ReasonCode.UnspecifiedError,
  'internal-error': ReasonCode.ImplementationSpecificError,
  'taken-over': ReasonCode.SessionTakenOver,
  'server-closing': ReasonCode.ServerShuttingDown,
  'closed-by-host': ReasonCode.AdministrativeAction,
  'protocol-error': ReasonCode.ProtocolError,
  'persistence-error': ReasonCode.UnspecifiedError,
}

/** The failure codes a CONNACK may carry (5.0 section 3.2.2.2). */
const CONNACK_ERROR_CODES: ReadonlySet<number> = new Set([
  0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f,
])

/** MQTT packet type numbers, for the counters. */
const PACKET_TYPE_NUMBERS: Record<Packet['type'], number> = {
  connect: 1, connack: 2, publish: 3, puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7,
  subscribe: 8, suback: 9, unsubscribe: 10, unsuback: 11, pingreq: 12, pingresp: 13, disconnect: 14, auth: 15,
}

type State = 'awaiting-connect' | 'connecting' | 'connected' | 'closed'

function destroyHeld(held: { stream: Duplex | null }): void {
  held.stream?.destroy()
}

/** The stream's own connection, for the listeners every connection shares. */
const CONNECTION = Symbol('culex.connection')
type OwnedStream = Duplex & { [CONNECTION]: Connection | undefined }

function flushTurn(connection: Connection): void {
  connection.flush()
}


/**
 * One network client: bytes in through the decoder to the packet handlers, packets out through
 * a corked writer. Handlers may go async (hooks returning promises); packets arriving meanwhile
 * wait their turn so order is kept, and the socket is paused so they cannot pile up.
 */
export class Connection implements Client, SessionLink {
  id = ''
  username: string | undefined
  protocolVersion: ProtocolVersion = 4
  cleanSession = true
  keepAlive = 0
  state: State = 'awaiting-connect'
  /** Another broker's bridge (CONNECT level 0x83/0x84): its subscriptions are No Local and Retain As Published. */
  bridge = false
  session: Session | null = null
  /** The will to publish if the connection ends without DISCONNECT. */
  will: WillMessage | undefined

  // MQTT 5: what the client told us in CONNECT.
  /** Unacknowledged QoS 1/2 PUBLISHes the client accepts from us (its Receive Maximum). */
  clientReceiveMaximum = 65_535
  /** Largest packet the client accepts; larger messages are not sent to it [MQTT-3.1.2-25]. */
  clientMaximumPacketSize = Number.POSITIVE_INFINITY
  /** Whether the client wants reason strings and user properties on acks (Request Problem Information). */
  requestProblemInformation = true
  /** Session Expiry Interval in force, seconds (0: the session ends with the connection). */
  sessionExpiryInterval = 0
  /** An MQTT 5 enhanced authentication exchange, from CONNECT on (kept for re-authentication). */
  auth: { method: string; state: unknown; connect: ConnectPacket; reauthenticating?: boolean; finalData?: Buffer } | undefined
  private rateBucket: RateBucket | undefined
  /** Counts PUBLISHes against limits.maxPublishRate (made when that limit is first used). */
  get publishRate(): RateBucket {
    return (this.rateBucket ??= new RateBucket())
  }
  /** Topic aliases the client set on its PUBLISHes (inbound). */
  inboundAliases: Map<number, string> | undefined
  /** The last topic name a PUBLISH of this client passed the checks with. */
  lastValidTopic: string | undefined = undefined
  /** How many topic aliases the client accepts from us (its Topic Alias Maximum). */
  clientTopicAliasMaximum = 0
  /** Aliases we set towards the client, by topic. */
  private outboundAliases: Map<string, number> | undefined

  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly certificate: PeerCertificate | undefined
  readonly transport: string
  readonly request: IncomingMessage | undefined
  private readonly decoder: PacketDecoder
  private readonly keepAliveTimer: KeepAlive
  private connectTimer: NodeJS.Timeout | undefined
  /** What this turn sends, in one write. */
  private readonly output: OutputBuffer
  private flushScheduled = false
  /** Whether the stream is corked (a large packet was written this turn). */
  private corked = false
  /** Acknowledgements waiting for a commit. */
  private acksWaiting = 0
  /** Decides when decoded packets are handled; exposed so handlers can count the work they cause. */
  readonly flow: InboundFlow

  constructor(
    readonly broker: BrokerContext,
    private readonly stream: Duplex,
    info: ConnectionInfo = {},
  ) {
    this.remoteAddress = info.remoteAddress
    this.remotePort = info.remotePort
    this.certificate = info.certificate
    this.transport = info.transport ?? 'stream'
    this.request = info.request
    this.output = new OutputBuffer(stream)
    this.flow = new InboundFlow(stream, this)
    this.decoder = new PacketDecoder((packet) => this.flow.accept(packet), broker.limits.maxPacketSize, broker.counters)
    this.keepAliveTimer = new KeepAlive(this)
    // Shared listeners that find the connection on the stream: no closures per connection.
    ;(stream as OwnedStream)[CONNECTION] = this
    stream.on('data', Connection.onStreamData)
    stream.on('error', Connection.onStreamError)
    stream.on('end', Connection.onStreamEnd)
    stream.on('close', Connection.onStreamEnd)
    // Section 3.1: a server should close a connection that sends no CONNECT within a reasonable time.
    this.connectTimer = setTimeout(() => {
      const why = `no CONNECT within ${broker.limits.connectTimeoutMs} ms`
      log.client('Closing the connection from %s on %s: %s', this.peer, this.transport, why)
      this.failedBeforeConnect(new Error(why), 'connect-timeout')
      this.end('connect-timeout')
    }, broker.limits.connectTimeoutMs)
    this.connectTimer.unref?.()
    // A transport may hand the stream over paused (after reading a PROXY header, say).
    stream.resume()
    log.client('New connection from %s on %s', this.peer, this.transport)
  }

  /** When the client's last bytes were read (Date.now()). */
  get lastReadAt(): number {
    return this.keepAliveTimer.lastActivity
  }

  get connected(): boolean {
    return this.state !== 'closed'
  }

  /** The documented `Client` fields, for JSON.stringify (the upgrade request is left out). */
  toJSON(): ClientSummary {
    return {
      id: this.id,
      username: this.username,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      transport: this.transport,
      certificate: this.certificate,
      protocolVersion: this.protocolVersion,
      cleanSession: this.cleanSession,
      keepAlive: this.keepAlive,
      connected: this.connected,
      bridge: this.bridge,
    }
  }

  /** util.inspect and console.log show the documented fields, not the broker's internals. */
  [inspect.custom](_depth: number, options: InspectOptionsStylized, show: typeof inspect): string {
    return `Client ${show(this.toJSON(), options)}`
  }

  /** "address:port" for log lines. */
  get peer(): string {
    return this.remotePort === undefined ? (this.remoteAddress ?? 'unknown') : `${this.remoteAddress}:${this.remotePort}`
  }

  /**
   * Sends an acknowledgement once the store holds what it vouches for: the changes recorded since
   * `mark` (the journal's `recorded` count before the change). One that recorded nothing goes at
   * once, unless an earlier acknowledgement still waits (acknowledgements keep their order). If
   * the commit fails, `failed` runs instead.
   */
  afterCommit(mark: number, send: () => void, failed: () => void): void {
    if (this.mayAckNow(mark)) return send()
    this.acksWaiting++
    this.broker.journal.afterCommit((ok) => {
      this.acksWaiting--
      if (this.state === 'closed') return
      if (ok) send()
      else failed()
    })
  }

  /** Whether an acknowledgement of changes recorded since `mark` may go now (the hot path's check, free of closures). */
  mayAckNow(mark: number): boolean {
    const journal = this.broker.journal
    return !journal.durable || (journal.recorded === mark && this.acksWaiting === 0)
  }

  /** The store failed to keep what an acknowledgement would promise, and no reason code fits it: MQTT 5 DISCONNECT 0x80; 3.1.1 closes. */
  storeFailed(what: string): void {
    log.client('Closing %s (%s): the store failed to keep %s', this.id, this.peer, what)
    this.end('persistence-error')
  }

  /** Called once CONNECT has been accepted. */
  accepted(session: Session, keepAlive: number): void {
    this.state = 'connected'
    this.session = session
    // [MQTT-3.3.4-9] never more unacknowledged QoS 1/2 PUBLISHes than the client's Receive Maximum
    session.inflightLimit = Math.min(this.broker.limits.maxInflight, this.clientReceiveMaximum)
    this.keepAlive = keepAlive
    if (this.connectTimer) clearTimeout(this.connectTimer)
    this.connectTimer = undefined
    this.decoder.protocolVersion = this.protocolVersion
    this.keepAliveTimer.start(keepAlive)
  }

  // A closed connection lets go of its stream (see end), so these find none and ignore the event.
  private static onStreamData(this: Duplex, chunk: Buffer): void {
    const connection = (this as OwnedStream)[CONNECTION]
    if (connection === undefined || connection.state === 'closed') return
    connection.keepAliveTimer.touch()
    connection.decode(chunk)
  }

  private static onStreamEnd(this: Duplex): void {
    ;(this as OwnedStream)[CONNECTION]?.end('socket-closed')
  }

  private static onStreamError(this: Duplex, error: Error): void {
    ;(this as OwnedStream)[CONNECTION]?.onStreamError(error)
  }

  /** @internal InboundFlow's owner: see FlowOwner. */
  handlePacket(packet: Packet): void | Promise<void> {
    return dispatch(this, packet)
  }

  /** @internal */
  decodeHeld(): void {
    this.decode(null)
  }

  /** @internal */
  handlingFailed(error: unknown): void {
    this.fail(error)
  }

  /** @internal */
  readingResumed(): void {
    this.keepAliveTimer.touch()
  }

  /** @internal KeepAlive's owner: see KeepAliveOwner. */
  keepAliveExpired(): void {
    this.end('keep-alive-timeout', ReasonCode.KeepAliveTimeout)
  }

  /** @internal */
  get readingPackets(): boolean {
    return this.flow.reading
  }

  /** Decodes a new chunk, or (null) what the decoder held while handling was paused. */
  private decode(chunk: Buffer | null): void {
    try {
      if (chunk === null) this.decoder.resume()
      else this.decoder.push(chunk)
    } catch (error) {
      if (error instanceof DecodeError) this.protocolError(error.message, error.reasonCode)
      else this.fail(error)
    }
  }

  /**
   * Closes on a protocol violation [MQTT-4.8.0-1]; an MQTT 5 client is told why first, with
   * `reasonCode` (0x81 malformed, 0x82 protocol error, or a more precise code) [MQTT-4.13.1-1].
   */
  protocolError(reason: string, reasonCode: number = ReasonCode.ProtocolError): void {
    if (this.state === 'closed') return
    log.client('Protocol error from %s (%s on %s): %s, closing', this.id || 'unknown client', this.peer, this.transport, reason)
    const error = new Error(reason)
    if (this.state === 'connected') this.broker.emit('clientError', this, error)
    else {
      // Section 4.13.1: an error in an MQTT 5 CONNECT may be answered with a CONNACK carrying the
      // reason code before the close, where the packet was read far enough to know its version.
      if (this.isV5Handshake()) this.sendConnackError(CONNACK_ERROR_CODES.has(reasonCode) ? reasonCode : ReasonCode.ProtocolError, reason)
      this.failedBeforeConnect(error, 'protocol-error')
    }
    this.end('protocol-error', reasonCode, reason)
  }

  /** Before CONNACK, on a connection whose CONNECT (decoded or not) says MQTT 5. */
  private isV5Handshake(): boolean {
    if (this.state === 'connecting') return this.protocolVersion === 5
    // The decoder learns the level from the CONNECT before it reads (and may fail on) the rest.
    return this.state === 'awaiting-connect' && this.decoder.protocolVersion === 5
  }

  private sendConnackError(code: number, reason: string): void {
    this.protocolVersion = 5
    this.send({ type: 'connack', sessionPresent: false, returnCode: code, properties: { reasonString: reason } })
  }

  /**
   * An exception while handling a packet: the host's hook failed (reported on `hostError`, the
   * client closed with reason 'hook-error'), or the broker itself did ('internal-error').
   */
  private fail(error: unknown): void {
    if (this.state === 'closed') return
    const hook = error instanceof HookError ? error : undefined
    const err = hook?.original ?? asError(error)
    const reason: DisconnectReason = hook ? 'hook-error' : 'internal-error'
    if (hook) {
      log.error('The %s hook failed for %s (%s): %s', hook.hook, this.id || 'unknown client', this.peer, err.stack ?? err.message)
      this.broker.emit('hostError', err, { kind: 'hook', hook: hook.hook, clientId: this.id })
    } else {
      log.error('Error handling %s (%s): %s', this.id || 'unknown client', this.peer, err.stack ?? err.message)
    }
    if (this.state === 'connected') this.broker.emit('clientError', this, err)
    else {
      if (this.state === 'connecting') {
        // A refusal the client understands: the server could not decide (3.1.1: server unavailable).
        if (this.protocolVersion === 5) this.sendConnackError(ReasonCode.UnspecifiedError, 'the server failed to decide')
        else this.send({ type: 'connack', sessionPresent: false, returnCode: ConnackReturnCode.ServerUnavailable })
      }
      this.failedBeforeConnect(err, reason)
    }
    this.end(reason, hook ? ReasonCode.UnspecifiedError : ReasonCode.ImplementationSpecificError)
  }

  private onStreamError(error: Error): void {
    if (this.state === 'closed') return
    log.client('Socket error on %s (%s on %s): %s', this.id || 'unknown client', this.peer, this.transport, error.message)
    if (this.state === 'connected') this.broker.emit('clientError', this, error)
    else this.failedBeforeConnect(error, 'socket-closed')
    this.end('socket-closed')
  }

  /** Reports a connection that failed before its CONNECT was accepted (`connectionError`). */
  private failedBeforeConnect(error: Error, reason: DisconnectReason): void {
    this.broker.emit('connectionError', error, this.info(), reason)
  }

  /** What the transport said about this connection. */
  info(): ConnectionInfo {
    return { remoteAddress: this.remoteAddress, remotePort: this.remotePort, transport: this.transport, certificate: this.certificate, request: this.request }
  }

  /**
   * Writes bytes. Small packets are copied into the output buffer, larger ones written to the
   * corked stream; both leave when the current callback's work is done (process.nextTick), so the
   * packets one read or one timer produces leave in one write.
   */
  write(bytes: Buffer): void {
    if (!this.writable()) return
    const over = this.stream.writableLength + this.output.pending + bytes.length > this.broker.limits.maxWriteBuffer
    if (bytes.length <= COPIED_PACKET_MAX) {
      this.output.append(bytes)
      if (over) this.overLimit()
      return
    }
    if (!this.corked) {
      this.corked = true
      this.stream.cork()
    }
    this.output.flush()
    if (!over) return void this.stream.write(bytes)
    this.stream.write(bytes, this.flushedOverLimit())
    this.flow.writeBufferFull()
  }

  /** Whether the stream takes writes; schedules the flush of this turn's packets. */
  private writable(): boolean {
    if (this.stream.writableEnded || this.stream.destroyed) return false
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(flushTurn, this)
    }
    return true
  }

  /**
   * Over the write buffer limit: stop reading this client until what is buffered has left.
   * 'drain' is no signal (a stream emits it only past its own high-water mark, which the limit
   * may be under), so every write made over the limit tells when it is flushed; when the last
   * one is, the buffer holds at most what was written under the limit since.
   */
  private overLimit(): void {
    this.output.flush(this.flushedOverLimit())
    this.flow.writeBufferFull()
  }

  /** Sends a PUBACK, PUBREC, PUBREL or PUBCOMP that carries no reason code (3.1.1, or MQTT 5 success). */
  sendAck(type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp', packetId: number): void {
    if (!this.writable()) return
    const number = PACKET_TYPE_NUMBERS[type]
    this.broker.counters.sent(number, 4)
    // [MQTT-3.6.1-1] PUBREL's fixed header flags are 0010
    this.output.appendAck(type === 'pubrel' ? 0x62 : number << 4, packetId)
    if (this.isCongested()) this.overLimit()
  }

  private overLimitFlushed: (() => void) | undefined
  /** The callback of writes made over the limit (made at the first: most connections never need it). */
  private flushedOverLimit(): () => void {
    return (this.overLimitFlushed ??= () => {
      if (this.stream.writableLength > this.broker.limits.maxWriteBuffer) return
      this.flow.writeBufferDrained()
      this.session?.writable()
    })
  }

  flush(): void {
    this.flushScheduled = false
    this.output.flush()
    if (!this.corked) return
    this.corked = false
    this.stream.uncork()
  }

  send(packet: Packet): void {
    const type = packet.type
    if ((type === 'puback' || type === 'pubrec' || type === 'pubrel' || type === 'pubcomp') && !packet.reasonCode && packet.properties === undefined) {
      return this.sendAck(type, packet.packetId)
    }
    const bytes = encodePacket(packet, this.protocolVersion)
    this.broker.counters.sent(PACKET_TYPE_NUMBERS[packet.type], bytes.length)
    this.write(bytes)
  }

  sendPublish(message: RoutedMessage, qos: QoS, retain: boolean, packetId: number, dup: boolean, subscriptionIds: number[] | undefined): boolean {
    if (this.protocolVersion !== 5) {
      const wire = message.takeWire(qos, retain)
      if (wire !== undefined) return this.sendReceived(message, wire, qos, retain, packetId, dup)
    }
    const alias = this.protocolVersion === 5 && this.clientTopicAliasMaximum > 0 ? this.topicAlias(message.topic) : undefined
    const template = this.protocolVersion !== 5 ? message.encodeV4(qos, retain) : message.encodeV5(qos, retain, subscriptionIds, alias)
    if (template.length > this.clientMaximumPacketSize) {
      // The client never learns an alias whose first PUBLISH it did not get.
      if (alias?.sendTopic) this.outboundAliases?.delete(message.topic)
      log.packet('Not sending PUBLISH on %j to %s: %d bytes over its Maximum Packet Size %d', message.topic, this.id, template.length, this.clientMaximumPacketSize)
      return false
    }
    this.countPublish(message, template.length, qos, retain, packetId, dup)
    if (qos === 0) {
      this.write(template)
      return true
    }
    // Only the packet identifier differs between subscribers. A small packet is copied whole and
    // patched; a large one gets its own header and shares the payload bytes (one writev, corked).
    const idOffset = publishPacketIdOffset(template)
    if (template.length <= COPIED_PACKET_MAX) {
      if (!this.writable()) return true
      this.output.appendPublish(template, idOffset, packetId, dup)
      if (this.isCongested()) this.overLimit()
      return true
    }
    const idEnd = idOffset + 2
    if (template.length - idEnd > SHARED_PAYLOAD_MIN) {
      const head = Buffer.allocUnsafe(idEnd)
      template.copy(head, 0, 0, idEnd)
      setPacketId(head, idOffset, packetId, dup)
      this.write(head)
      this.write(template.subarray(idEnd))
      return true
    }
    const bytes = Buffer.allocUnsafe(template.length)
    template.copy(bytes)
    setPacketId(bytes, idOffset, packetId, dup)
    this.write(bytes)
    return true
  }

  /** sendPublish for a small 3.1/3.1.1 PUBLISH copied as received from `wire` (see RoutedMessage.takeWire). */
  private sendReceived(message: RoutedMessage, wire: Buffer, qos: QoS, retain: boolean, packetId: number, dup: boolean): boolean {
    this.countPublish(message, message.bytesBeforePayload + message.payload.length, qos, retain, packetId, dup)
    if (!this.writable()) return true
    this.output.appendReceived(wire, message.bytesBeforePayload, message.payload, qos, packetId, dup)
    if (this.isCongested()) this.overLimit()
    return true
  }

  /** A PUBLISH of `length` bytes on its way: the counters, and its summary for `DEBUG=culex:packet`. */
  private countPublish(message: RoutedMessage, length: number, qos: QoS, retain: boolean, packetId: number, dup: boolean): void {
    const counters = this.broker.counters
    counters.sent(3, length)
    counters.messagesSent[qos] = (counters.messagesSent[qos] as number) + 1
    if (log.packet.enabled) {
      log.packet('Sending PUBLISH to %s (d%d, q%d, r%d, m%d, %j, ... (%d bytes))', this.id, dup ? 1 : 0, qos, retain ? 1 : 0, packetId, message.topic, message.payload.length)
    }
  }

  /**
   * An outbound topic alias for a topic worth one (long enough to save bytes), while the client's
   * Topic Alias Maximum allows; the first use carries the topic, later ones only the alias
   * [MQTT-3.3.2-10]. Aliases are never reassigned, so they need no eviction bookkeeping.
   */
  private topicAlias(topic: string): TopicAliasUse | undefined {
    if (topic.length < ALIAS_MIN_TOPIC_LENGTH) return undefined
    const aliases = (this.outboundAliases ??= new Map())
    const known = aliases.get(topic)
    if (known !== undefined) return { alias: known, sendTopic: false }
    if (aliases.size >= this.clientTopicAliasMaximum) return undefined
    const alias = aliases.size + 1
    aliases.set(topic, alias)
    return { alias, sendTopic: true }
  }

  sendPubrel(packetId: number): void {
    this.sendAck('pubrel', packetId)
  }

  isCongested(): boolean {
    return this.stream.writableLength + this.output.pending > this.broker.limits.maxWriteBuffer
  }

  /** The host's `client.close()`: see `Client.close`. */
  close(reasonCode: number = ReasonCode.AdministrativeAction, reasonString?: string): void {
    // Only DISCONNECT reason codes (0x80 and up) say why the server ends a connection.
    const code = reasonCode >= 0x80 && reasonCode <= 0xff ? reasonCode : ReasonCode.AdministrativeAction
    this.end('closed-by-host', code, reasonString)
  }

  /**
   * Ends the connection; the will is published unless the client sent DISCONNECT. An MQTT 5
   * client that completed CONNECT is sent DISCONNECT with `reasonCode` first, where the spec
   * lets the server say why (not after the client's own DISCONNECT, nor on a dead socket).
   */
  end(reason: DisconnectReason, reasonCode?: number, reasonString?: string, serverReference?: string): void {
    if (this.state === 'closed') return
    const wasConnected = this.state === 'connected'
    const code = reasonCode ?? DISCONNECT_CODES[reason]
    if (wasConnected && this.protocolVersion === 5 && code !== undefined) {
      const properties: Properties | undefined =
        reasonString !== undefined && this.requestProblemInformation ? { reasonString } : serverReference !== undefined ? {} : undefined
      // Section 3.14.2.2.5: a Server Reference tells the client where to go (0x9C, 0x9D).
      if (properties !== undefined && serverReference !== undefined) properties.serverReference = serverReference
      this.send(properties ? { type: 'disconnect', reasonCode: code, properties } : { type: 'disconnect', reasonCode: code })
    }
    this.state = 'closed'
    if (this.connectTimer) clearTimeout(this.connectTimer)
    this.keepAliveTimer.stop()
    this.flow.stop()
    this.flush()
    // end() lets a last CONNACK or DISCONNECT reach the peer; destroy() follows in case the peer never reads.
    this.stream.end()
    // A paused socket would never read the peer's FIN and so never close, holding up
    // server.close() and broker.close(); reading on only discards (onData ignores a closed connection).
    this.stream.resume()
    const stream = this.stream
    // The stream may outlive the connection by up to a second (the timer below); it must not keep
    // the connection, its session and buffers alive meanwhile (after a flood, 10,000 of them).
    ;(stream as OwnedStream)[CONNECTION] = undefined
    if (!stream.destroyed) {
      // The timer holds the stream through a box emptied at 'close', rather than being cleared:
      // the stream is released once closed either way.
      const held: { stream: Duplex | null } = { stream }
      setTimeout(destroyHeld, 1000, held).unref()
      stream.once('close', () => {
        held.stream = null
      })
    }
    if (wasConnected) log.client('Client %s (%s) disconnected: %s', this.id, this.peer, reason)
    else log.client('Connection from %s closed before CONNECT completed: %s', this.peer, reason)
    this.broker.connectionClosed(this, wasConnected ? this.session : null, reason, this.will)
  }
}
