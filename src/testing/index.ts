/**
 * Tools for testing Culex persistence adapters: the conformance suite every adapter (the built-in
 * ones and third-party ones) must pass, and the pieces it is made of.
 *
 * ```ts
 * // test/my-adapter.test.ts, run with: node --import tsx --test test/my-adapter.test.ts
 * import { persistenceConformance } from 'culex-mqtt/testing'
 * import { MyAdapter } from '../src/my-adapter.js'
 *
 * persistenceConformance('MyAdapter', { create: () => new MyAdapter({ fresh: true }) })
 * ```
 *
 * The suite registers `node:test` tests, so importing this module loads `node:test`; nothing runs
 * until `persistenceConformance` is called.
 * @packageDocumentation
 */
export { persistenceConformance } from './persistence-conformance.js'
export type { ConformanceOptions, CrashChildOptions, CrashStore } from './persistence-conformance.js'
export { runCrashChild } from './crash.js'
export { assertRestoredShape, assertSameState, plainState } from './state.js'
export type { PlainState } from './state.js'
export type {
  Awaitable,
  DeliveryState,
  PersistenceAdapter,
  PersistenceOp,
  RestoredDelivery,
  RestoredSession,
  RestoredState,
  StoredMessage,
} from '../persistence/adapter.js'
