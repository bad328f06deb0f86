/**
 * The test helpers, by role:
 * - wait.ts: `until` (the one way to wait for a condition), `Waiters`, `once`, `disconnected`/`gone`,
 *   all with deadlines on the real clock (safe under node:test mock timers);
 * - broker.ts: `startBroker`/`withBroker` (and the MQTT 5 flavours), `leave`, the marker `fence`;
 * - raw.ts: `RawMqtt`, the one raw client (bytes and packets; also named RawV5), `memoryPair`;
 * - packets.ts: packet builders, hand-made malformed bytes, and byte-level CONNACK checks;
 * - mqtt.ts: `Inbox` for `mqtt` clients, `subackCodes`, the PINGREQ fence `ping`;
 * - timers.ts: mock timers for the tests of protocol timers;
 * - programs.ts: `skipWithout` for tests that need an outside program.
 */
export * from './adapters.js'
export * from './broker.js'
export * from './mqtt.js'
export * from './packets.js'
export * from './programs.js'
export * from './raw.js'
export * from './timers.js'
export * from './wait.js'
