/** Moved to test/helpers/ (see test/helpers/index.ts); this file only re-exports, until nothing imports it. */
export {
  buildConnect,
  connect,
  connectAccepted,
  decodeAll,
  DISCONNECT,
  expectClosedSilently,
  expectRefused,
  lp,
  packet,
  PINGREQ,
  PINGRESP,
  publish,
  rawConnect,
  readConnack,
  subscribe,
  varint,
} from '../helpers/index.js'
