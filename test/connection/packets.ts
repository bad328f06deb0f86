/** Moved to test/helpers/ (see test/helpers/index.ts); this file only re-exports, until nothing imports it. */
export { fixedHeader, Inbox, RawMqtt, str, subackCodes, u16, type PacketOf, type Received } from '../helpers/index.js'
