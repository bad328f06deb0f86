import { RetainedIndex } from '../routing/retained-store.js'
import type { PersistenceAdapter, SessionRecord, StoredMessage } from './adapter.js'

/**
 * The default adapter: everything in this process's memory, gone when it exits. Answers
 * synchronously so the broker's fast paths stay free of promises.
 */
export class MemoryPersistence implements PersistenceAdapter {
  private readonly retained = new RetainedIndex<StoredMessage>()
  private readonly sessions = new Map<string, SessionRecord>()

  storeRetained(message: StoredMessage): void {
    if (message.payload.length === 0) this.retained.delete(message.topic)
    else this.retained.set(message.topic, message)
  }

  matchRetained(topicFilter: string): StoredMessage[] {
    return this.retained.match(topicFilter)
  }

  saveSession(record: SessionRecord): void {
    // The broker hands over a fresh record each time and never mutates it afterwards.
    this.sessions.set(record.clientId, record)
  }

  deleteSession(clientId: string): void {
    this.sessions.delete(clientId)
  }

  loadSessions(): SessionRecord[] {
    return [...this.sessions.values()]
  }

  close(): void {}
}
