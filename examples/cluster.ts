// Two broker nodes sharing one Redis behave as one broker: a message published on one reaches
// subscribers on the other. Usually each node is its own process (or machine) behind a load
// balancer; here both run in one script to show it.
// Needs a Redis with appendonly yes and appendfsync always, and the ioredis package.
// Run: REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/cluster.ts   (Ctrl-C stops it)
import type { AddressInfo } from 'node:net'
import { Broker, tcp } from 'culex-mqtt'

const redis = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

const nodeA = new Broker({ cluster: { redis, nodeId: 'node-a' } })
const nodeB = new Broker({ cluster: { redis, nodeId: 'node-b' } })

// An in-process subscriber on node B; MQTT clients of either node could subscribe just the same.
await nodeB.subscribe('greetings/#', (message) => {
  console.log(`node-b got ${message.payload.toString()} on ${message.topic}`)
})

const a = await nodeA.listen(tcp({ port: Number(process.env.PORT_A ?? 1883) }))
const b = await nodeB.listen(tcp({ port: Number(process.env.PORT_B ?? 1884) }))
console.log(`node-a listening on port ${(a.address() as AddressInfo).port}`)
console.log(`node-b listening on port ${(b.address() as AddressInfo).port}`)

// Published on node A: it crosses to node B through Redis, once the subscription is known there.
await nodeA.publish({ topic: 'greetings/world', payload: 'hello from node-a', qos: 1 })

const stop = (): void => void Promise.all([nodeA.close(), nodeB.close()])
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
