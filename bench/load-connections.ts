// Connection churn (connections per second: bench/connect-churn.c where it could be built, the
// Node workers here otherwise) and idle connections (memory per connection; with a subscription
// each, or by the 100,000 from several loopback source addresses).

import type { Running, StartArgs } from './load-types.js'
import { startNativeConnect } from './connect-churn.js'
import { freshLoopbacks } from './dial.js'
import { openMany, WireClient, withTimeout } from './mqtt-wire.js'

export async function startConnect(args: StartArgs): Promise<Running> {
  const { port, spec, tag } = args
  if (spec.kind !== 'connect') throw new Error(`not a connect load: ${spec.kind}`)
  // The native program when it could be built; these Node workers are the fallback (run.ts marks their numbers).
  if (args.connectChurn !== undefined) return startNativeConnect(args.connectChurn, args)
  let connections = 0
  let failures = 0
  let started = 0
  let running = true

  const worker = async (w: number): Promise<void> => {
    // Bounded both by the stop flag and by a total count, so a broker that answers
    // absurdly fast still cannot make this loop run away (or exhaust ephemeral ports).
    while (running && started < spec.maxConnections) {
      const i = started++
      try {
        const c = await WireClient.open({ port, clientId: `${tag}-w${w}-${i}`, timeoutMs: 5000 })
        // Spec-conformant close: the client sends DISCONNECT and closes the connection.
        await c.disconnect(1000)
        connections++
      } catch {
        failures++
        // Do not spin on a broker that refuses everything.
        await new Promise((r) => setTimeout(r, 10))
      }
    }
  }
  const workers = Array.from({ length: spec.workers }, (_, w) => worker(w))

  return {
    counters: () => ({ connections, failures }),
    stop: async () => {
      running = false
      await withTimeout(Promise.all(workers), 10_000, 'connect workers to finish').catch(() => {})
    },
  }
}

export async function startIdle(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'idle') throw new Error(`not an idle load: ${spec.kind}`)
  // Fresh source addresses, `perAddress` connections each, when one address's ports do not suffice.
  const sources = spec.perAddress === undefined ? [] : freshLoopbacks(Math.ceil(spec.clients / spec.perAddress))
  // keepalive 60 s like a typical device; nothing else is sent during the measurement.
  const clients = await openMany(spec.clients, spec.concurrency, (i) => ({
    port, dial, clientId: `${tag}-idle-${i}`, keepalive: 60, timeoutMs: 10_000,
    ...(spec.subscribe ? { subscribe: { topic: `bench/${tag}/idle/${i}`, qos: 0 as const } } : {}),
    ...(spec.perAddress === undefined ? {} : { localAddress: sources[Math.floor(i / spec.perAddress)] }),
  }))
  return {
    counters: () => ({
      connected: clients.reduce((n, c) => n + (c.closed ? 0 : 1), 0),
      socketErrors: clients.reduce((n, c) => n + c.errors, 0),
    }),
    stop: async () => {
      for (const c of clients) c.destroy()
    },
  }
}
