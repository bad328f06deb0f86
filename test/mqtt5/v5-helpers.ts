/** Moved to test/helpers/ (see test/helpers/index.ts); this file only re-exports, until nothing imports it. */
export {
  connectPacket,
  fence,
  gone,
  hex,
  leave,
  RawV5,
  startV5Broker,
  TEST_TIMEOUT,
  until,
  withV5Broker,
  type PacketOf,
  type V5Broker,
} from '../helpers/index.js'
export type { Inbox as Collector, Received as Got, RecordedClient as MqttConnection } from '../helpers/index.js'
