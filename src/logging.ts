import createDebug from 'debug'

/**
 * Debug namespaces. `DEBUG=culex:*` shows what `mosquitto -v` shows: connections, CONNACK
 * codes, SUBSCRIBE and PUBLISH summaries, PINGREQ/PINGRESP and why clients went away.
 */
export const log = {
  /** Broker lifecycle: listeners, shutdown, persistence. */
  broker: createDebug('culex:broker'),
  /** Client lifecycle: new connections, CONNACK, disconnects and their reasons. */
  client: createDebug('culex:client'),
  /** Per-packet summaries (PUBLISH, SUBSCRIBE, PINGREQ ...). Checked with `.enabled` on the hot path. */
  packet: createDebug('culex:packet'),
  /** Hook decisions: refused connections, publishes and subscriptions. */
  auth: createDebug('culex:auth'),
  /** The persistence store: restores, failing and recovering commits, adapter warnings. */
  persistence: createDebug('culex:persistence'),
  /** Errors in the host's own code (event listeners, hooks) that the broker caught. */
  error: createDebug('culex:error'),
}
