import type { Client } from '../hooks/types.js'
import { asError } from '../hooks/errors.js'
import type { BrokerEvents } from '../hooks/events.js'
import { isPromise } from '../hooks/promise.js'
import { log } from '../logging.js'
import type { WillMessage } from '../protocol/packets.js'
import type { AuthorizePublishHook } from '../hooks/types.js'
import { RoutedMessage } from './routed-message.js'
import type { Session } from './session.js'
import type { SessionStore } from './session-store.js'

const MAX_TIMEOUT_MS = 2_147_483_647

/** What publishing a will needs from the broker. */
export interface WillPublisher {
  readonly authorizePublish: AuthorizePublishHook | undefined
  readonly store: SessionStore
  publish(message: RoutedMessage, from: Client, session: Session | null): number
  emit<E extends keyof BrokerEvents>(event: E, ...args: Parameters<BrokerEvents[E]>): void
}

/**
 * Every will's life: kept (and stored, for sessions with a stored record) while its connection is open,
 * published when the connection ends without DISCONNECT [MQTT-3.1.2-8], after its MQTT 5 Will
 * Delay Interval or when the session ends, whichever comes first, cancelled by a reconnect in
 * time [MQTT-3.1.3-9]. A delayed will is stored with its due time, so a restarted broker
 * publishes it when it is due; `close()` stops the timers and leaves that to the next broker.
 */
export class Wills {
  private readonly pending = new Set<Session>()
  private closed = false

  constructor(private readonly broker: WillPublisher) {}

  /**
   * A connection opened the session, with this will (or none); a delayed will of an earlier
   * connection is cancelled [MQTT-3.1.3-9], to come back if this connection never gets its CONNACK.
   */
  connected(session: Session, will: WillMessage | undefined): void {
    const pending = session.pendingWill
    if (pending !== undefined) {
      this.cancel(session)
      session.cancelledWill = pending
    }
    session.will = will
    if (session.recorded) this.broker.store.will(session.clientId, will ?? null)
  }

  /** The connection got its CONNACK: a will it cancelled stays cancelled. */
  accepted(session: Session): void {
    session.cancelledWill = undefined
  }

  /**
   * The connection that opened the session went before its CONNACK: its own will is never
   * published, and a delayed will it cancelled is due again as before.
   */
  abandoned(session: Session): void {
    const cancelled = session.cancelledWill
    session.cancelledWill = undefined
    session.will = undefined
    if (cancelled === undefined) {
      if (session.recorded) this.broker.store.will(session.clientId, null)
      return
    }
    if (session.recorded) this.broker.store.will(session.clientId, cancelled.will, cancelled.publishAt)
    this.schedule(cancelled.client as Client, session, cancelled.will, cancelled.publishAt)
  }

  /** The client disconnected normally: its will is discarded. */
  discarded(session: Session): void {
    session.will = undefined
    if (session.recorded) this.broker.store.will(session.clientId, null)
  }

  /** The connection ended without DISCONNECT: the will is due, now or after its delay. */
  due(client: Client, session: Session, will: WillMessage, sessionEnds: boolean): void {
    const delay = will.properties?.willDelayInterval ?? 0
    if (delay === 0 || sessionEnds) {
      this.publish(client, will, session)
      return
    }
    const seconds = Math.min(delay, session.expiryInterval)
    const publishAt = Date.now() + seconds * 1000
    if (session.recorded) this.broker.store.will(session.clientId, will, publishAt)
    this.schedule(client, session, will, publishAt)
  }

  /** A will restored from the store: due at `publishAt`, or now if its connection was open when the last run stopped. */
  restored(client: Client, session: Session, will: WillMessage, publishAt: number | undefined): void {
    // A will stored without a due time belongs to a connection the last run never saw close: it
    // ended without DISCONNECT, so the will is due [MQTT-3.1.2-8], after its delay if it has one.
    if (publishAt === undefined) return this.due(client, session, will, false)
    this.schedule(client, session, will, publishAt)
  }

  /** The session ends: a will still waiting for its delay is due now [MQTT-3.1.3-9]. */
  sessionEnds(session: Session): void {
    const pending = session.pendingWill
    if (pending === undefined) return
    this.cancel(session)
    pending.fire()
  }

  /** The session leaves this broker (another cluster node took it over): its delayed will stays stored, for the new owner. */
  forget(session: Session): void {
    this.cancel(session)
  }

    /** Stops every timer without publishing: the store keeps the wills for the next broker. */
  close(): void {
    this.closed = true
    for (const session of this.pending) this.cancel(session)
  }

  /** A reconnect in time cancels a delayed will [MQTT-3.1.3-9]. */
  private cancel(session: Session): void {
    const pending = session.pendingWill
    if (pending === undefined) return
    clearTimeout(pending.timer)
    session.pendingWill = undefined
    this.pending.delete(session)
  }

  private schedule(client: Client, session: Session, will: WillMessage, publishAt: number): void {
    // After close() the store holds the due time: the next broker publishes it.
    if (this.closed) return
    const fire = (): void => {
      this.cancel(session)
      this.publish(client, will, session)
    }
    const arm = (): NodeJS.Timeout => {
      const left = publishAt - Date.now()
      // setTimeout takes at most about 24.8 days; longer delays re-arm.
      const timer = setTimeout(() => {
        if (publishAt - Date.now() > 0 && session.pendingWill !== undefined) session.pendingWill.timer = arm()
        else fire()
      }, Math.max(0, Math.min(left, MAX_TIMEOUT_MS)))
      timer.unref()
      return timer
    }
    session.pendingWill = { timer: arm(), fire, client, will, publishAt }
    this.pending.add(session)
  }

  private publish(client: Client, will: WillMessage, session: Session): void {
    const broker = this.broker
    if (session.recorded) broker.store.will(session.clientId, null)
    const message = new RoutedMessage(will.topic, will.payload, will.qos, will.retain)
    if (will.properties) {
      // Will properties travel with the message, all but the delay, which was for the broker alone.
      const { willDelayInterval: _delay, ...forwarded } = will.properties
      if (Object.keys(forwarded).length > 0) message.properties = forwarded
    }
    const send = (answer: boolean | number): void => {
      if (answer !== true && answer !== 0) {
        log.auth('authorizePublish refused the will of %s on %j', client.id, will.topic)
        return
      }
      log.client('Publishing the will of %s on %j', client.id, will.topic)
      broker.publish(message, client, session)
      broker.emit('willPublish', message, client)
    }
    const authorize = broker.authorizePublish
    if (authorize === undefined) return send(true)
    let allowed: boolean | number | Promise<boolean | number>
    try {
      allowed = authorize(client, message)
    } catch (error) {
      this.hookFailed(client, error)
      return
    }
    if (isPromise(allowed)) allowed.then(send, (error: unknown) => this.hookFailed(client, error))
    else send(allowed)
  }

  /** The host's authorizePublish failed on a will: the will is not published, the host is told. */
  private hookFailed(client: Client, error: unknown): void {
    log.error('authorizePublish failed for the will of %s: %O', client.id, error)
    this.broker.emit('hostError', asError(error), { kind: 'hook', hook: 'authorizePublish', clientId: client.id })
  }
}
