// The load generator process: runs one load at a time against a broker port, on request from
// bench/run.ts over IPC. It is a separate process from every broker so that their CPU can be
// told apart, and run.ts reports this process's CPU next to the broker's: a generator near
// 100% of a core means the number measures the generator, not the broker.
//
// Requests: start {port, spec, payloadBytes, tag, dial} → set up clients and start traffic;
//             answers the load's setup results (e.g. how long a phase took) or null;
//           mark {phase: 'begin'|'end'} → {t, cpuUs, counters, metrics, problem?} (cpuUs includes
//             the load's own processes: the native connect program);
//           finish → run the second phase of a two-phase load, answer its results;
//           stop → tear every socket down.

import { performance } from 'node:perf_hooks'
import { serveIpc } from './ipc.js'
import { startConnect, startIdle } from './load-connections.js'
import { startLatency } from './load-latency.js'
import { startMqtt5 } from './load-mqtt5.js'
import { startPersistent } from './load-persistent.js'
import { startRetained } from './load-retained.js'
import { startSubscriptions } from './load-subscriptions.js'
import { startThroughput } from './load-throughput.js'
import { startWildcard } from './load-wildcard.js'
import type { Mark, Running, StartArgs } from './load-types.js'
import { withTimeout } from './mqtt-wire.js'

let current: Running | null = null

async function stopCurrent(): Promise<void> {
  const r = current
  current = null
  if (r) await withTimeout(r.stop(), 15_000, 'stopping the load')
}

function start(args: StartArgs): Promise<Running> {
  switch (args.spec.kind) {
    case 'fanin':
    case 'fanout':
    case 'pairs':
      return startThroughput(args)
    case 'latency':
      return startLatency(args)
    case 'connect':
      return startConnect(args)
    case 'idle':
      return startIdle(args)
    case 'wildcard':
      return startWildcard(args)
    case 'pairs5':
      return startMqtt5(args)
    case 'persistent':
      return startPersistent(args)
    case 'retained':
      return startRetained(args)
    case 'subscriptions':
      return startSubscriptions(args)
  }
}

async function mark(phase: 'begin' | 'end'): Promise<Mark> {
  const r = current
  if (!r) throw new Error('no load is running')
  if (phase === 'begin') r.beginWindow?.()
  const metrics = phase === 'end' ? r.endWindow?.() ?? {} : {}
  // Counters first: from another process they take a round trip, and the time and CPU go with them.
  const counters = await r.counters()
  const cpu = process.cpuUsage()
  const problem = r.problem?.() ?? null
  return { t: performance.now(), cpuUs: cpu.user + cpu.system + (r.cpuUs?.() ?? 0), counters, metrics, ...(problem === null ? {} : { problem }) }
}

serveIpc({
  start: async (args) => {
    await stopCurrent()
    current = await start(args as StartArgs)
    return current.setup ?? null
  },
  finish: async () => {
    if (!current?.finish) throw new Error('the running load has no second phase')
    return current.finish()
  },
  mark: (args) => mark((args as { phase: 'begin' | 'end' }).phase),
  stop: async () => {
    await stopCurrent()
    return null
  },
}, () => process.exit(0))

process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
process.send?.({ type: 'ready' })
