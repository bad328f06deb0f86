// Embed a broker and watch what devices do.
// Run: npx tsx examples/basic.ts   (PORT=1884 to change the port; Ctrl-C stops it)
import type { AddressInfo } from 'node:net'
import { Broker, tcp } from 'culex-mqtt'

const broker = new Broker()

broker.on('clientConnect', (client) => console.log(`connected: ${client.id} from ${client.remoteAddress}`))
broker.on('clientDisconnect', (client, reason) => console.log(`disconnected: ${client.id} (${reason})`))
broker.on('subscribe', (subscriptions, client) => {
  for (const s of subscriptions) console.log(`subscribed: ${client.id} to ${s.topicFilter} (QoS ${s.qos})`)
})
broker.on('publish', (message, client) => {
  console.log(`published: ${message.topic} = ${message.payload.toString()} by ${client?.id ?? 'the app'}`)
})
broker.on('willPublish', (message, client) => console.log(`will: ${client.id} left a will on ${message.topic}`))

// The app can listen in too, without a network client.
await broker.subscribe('sensors/+/temperature', (message) => {
  console.log(`app got temperature ${message.payload.toString()} on ${message.topic}`)
})

const listener = await broker.listen(tcp({ port: Number(process.env.PORT ?? 1883) }))
console.log(`listening on port ${(listener.address() as AddressInfo).port}`)

process.once('SIGINT', () => void broker.close())
process.once('SIGTERM', () => void broker.close())
