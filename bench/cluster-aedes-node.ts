// One node of the Aedes cluster of the cluster scenarios (bench/cluster.ts), alone in its own
// process so that its CPU can be read from /proc:
//
//   node --import tsx bench/cluster-aedes-node.ts redis://127.0.0.1:PORT
//
// Aedes clusters the way its README says: every node shares one Redis, through `mqemitter-redis`
// as its `mq` (messages between nodes: a Redis PUBLISH per message, a Redis SUBSCRIBE per topic a
// node has subscribers for) and `aedes-persistence-redis` as its persistence (subscriptions,
// QoS 1 in-flight messages, retained messages, wills). Defaults otherwise (concurrency 100).
//
// Started by bench/cluster-brokers.ts over fork() (IPC). Listens on an ephemeral port on 127.0.0.1
// and sends `{ type: 'ready', port, pid }`; answers `close`; exits on SIGTERM/SIGINT or when the
// parent goes away.

import net from 'node:net'
import { notify, serveIpc } from './ipc.js'

const HOST = '127.0.0.1'

async function main(): Promise<void> {
  const redisUrl = process.argv[2]
  if (!redisUrl) throw new Error('usage: cluster-aedes-node.ts redis://HOST:PORT')
  const url = new URL(redisUrl)
  const redisOptions = { host: url.hostname, port: Number(url.port || 6379), family: 4 }
  const { Aedes } = await import('aedes')
  const { default: mqemitterRedis } = await import('mqemitter-redis')
  const { default: aedesPersistenceRedis } = await import('aedes-persistence-redis')
  // No listener for its `state` 'error' events: a node that loses Redis is no longer part of the
  // cluster, and dies, which the bench reports.
  const mq = mqemitterRedis(redisOptions)
  const persistence = aedesPersistenceRedis(redisOptions)
  const aedes = await Aedes.createBroker({ mq, persistence })
  const server = net.createServer(aedes.handle)
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const addr = server.address()
      if (addr === null || typeof addr === 'string') return reject(new Error('no TCP address'))
      resolve(addr.port)
    })
  })

  let closing = false
  const shutdown = async (): Promise<void> => {
    if (closing) return
    closing = true
    // A node that cannot close in time is not what is measured; just go.
    setTimeout(() => process.exit(0), 3000).unref()
    server.close()
    // aedes.close() closes the clients and its mq (both Redis connections); the persistence's
    // connection goes with the process.
    await new Promise<void>((resolve) => aedes.close(() => resolve()))
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown())
  process.on('SIGINT', () => void shutdown())
  serveIpc({ close: () => { setImmediate(() => void shutdown()); return null } }, () => void shutdown())
  notify({ type: 'ready', port, pid: process.pid })
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.stack ?? err.message : String(err)
  notify({ type: 'failed', message })
  process.stderr.write(`cluster-aedes-node: ${message}\n`)
  setTimeout(() => process.exit(1), 100)
})
