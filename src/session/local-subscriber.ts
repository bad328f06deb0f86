import { asError } from '../hooks/errors.js'
import { isPromise } from '../hooks/promise.js'
import type { QoS } from '../protocol/packets.js'
import type { RoutedMessage } from './routed-message.js'

/**
 * An in-process subscriber (`broker.subscribe`): routed like a client session, delivered by a
 * function call. It may be a member of a shared subscription group, where it is always online.
 */
export class LocalSubscriber {
  matchGen = 0
  matchQos: QoS = 0
  matchIds: number[] | undefined = undefined
  matchRetainAsPublished = false
  readonly online = true

  constructor(
    readonly topicFilter: string,
    private readonly handler: (message: RoutedMessage) => unknown,
    private readonly failed: (error: Error) => void,
  ) {}

  deliver(message: RoutedMessage): void {
    try {
      const result = this.handler(message)
      if (isPromise(result)) result.then(undefined, (error: unknown) => this.failed(asError(error)))
    } catch (error) {
      this.failed(asError(error))
    }
  }
}
