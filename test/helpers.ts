/** Moved to test/helpers/ (see test/helpers/index.ts); this file only re-exports, until nothing imports it. */
export {
  delay,
  disconnected,
  Inbox,
  leave,
  once,
  RawClient,
  RawStream,
  skipWithout,
  startBroker,
  subackCodes,
  Waiters,
  withBroker,
  type Received,
  type RecordedClient,
  type TestBroker,
} from './helpers/index.js'
