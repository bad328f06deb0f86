import type { Journal } from '../persistence/journal.js'
import type { StoredMessage } from '../persistence/adapter.js'
import { isExpired, type RoutedMessage } from '../session/routed-message.js'
import { RetainedIndex } from './retained-store.js'

/**
 * The retained messages: held in memory (matched without asking the store, so a SUBSCRIBE never
 * waits for it), written through the journal, restored at start.
 */
export class RetainedMessages {
  private readonly index = new RetainedIndex<StoredMessage>()

  constructor(private readonly journal: Journal) {}

  get size(): number {
    return this.index.size
  }

  restore(messages: readonly StoredMessage[]): void {
    for (const message of messages) this.index.set(message.topic, message)
  }

  /**
   * Keeps `message` as its topic's retained message [MQTT-3.3.1-5], or with an empty payload
   * removes the topic's [MQTT-3.3.1-10].
   */
  store(message: RoutedMessage): void {
    message.ownPayload()
    if (message.payload.length === 0) {
      if (this.index.delete(message.topic)) this.journal.record({ op: 'unretain', topic: message.topic })
      return
    }
    // A plain copy: the index must not keep the message's cached encodings alive.
    const stored = message.toStored()
    this.index.set(stored.topic, stored)
    this.journal.record({ op: 'retain', message: stored })
  }

  /**
   * Keeps a retained message in memory only: the broker's own $SYS topics, which describe this
   * process and mean nothing to the next one (nor, in a cluster, to the other nodes).
   */
  keepInMemory(message: RoutedMessage): void {
    message.ownPayload()
    this.index.set(message.topic, message.toStored())
  }

  /** Another cluster node changed a topic's retained message (already stored): the index follows. */
  changedElsewhere(topic: string, message: StoredMessage | null): void {
    if (message === null) this.index.delete(topic)
    else this.index.set(topic, message)
  }

  /** The unexpired retained messages matching a filter; expired ones leave storage [MQTT-3.3.2-5]. */
  match(topicFilter: string, now = Date.now()): StoredMessage[] {
    const found = this.index.match(topicFilter)
    let live: StoredMessage[] | undefined
    for (let i = 0; i < found.length; i++) {
      const stored = found[i] as StoredMessage
      if (!isExpired(stored, now)) {
        live?.push(stored)
        continue
      }
      live ??= found.slice(0, i)
      this.index.delete(stored.topic)
      // Compare-and-delete: only this message, never a newer one the store may hold for the topic.
      this.journal.record({ op: 'unretain', topic: stored.topic, receivedAt: stored.receivedAt })
    }
    return live ?? found
  }
}
