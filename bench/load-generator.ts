// The load generator process: runs one load at a time against a broker port, on request from
// bench/run.ts over IPC. It is a separate process from every broker so that their CPU can be
// told apart, and run.ts reports this process's CPU next to the broker's: a generator near
// 100% of a core means the number measures the generator, not the broker.
//
// Requests: start {port, spec, payloadBytes, tag} → set up clients and start traffic;
//           mark {phase: 'begin'|'end'} → {t, cpuUs, counters, metrics};
//           stop → tear every socket down.

import { performance } from 'node:perf_hooks'
import { serveIpc } from './ipc.js'
import { startConnect, startIdle } from './load-connections.js'
import { startLatency } from './load-latency.js'
import { startThroughput } from './load-throughput.js'
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
  }
}

function mark(phase: 'begin' | 'end'): Mark {
  if (!current) throw new Error('no load is running')
  if (phase === 'begin') current.beginWindow?.()
  const metrics = phase === 'end' ? current.endWindow?.() ?? {} : {}
  const cpu = process.cpuUsage()
  return { t: performance.now(), cpuUs: cpu.user + cpu.system, counters: current.counters(), metrics }
}

serveIpc({
  start: async (args) => {
    await stopCurrent()
    current = await start(args as StartArgs)
    return null
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
