// Fastify and MQTT over WebSocket on one port; the broker shuts down with the Fastify instance.
// Run: npx tsx examples/fastify.ts   then: curl -X POST localhost:3000/broadcast -H 'content-type: application/json' -d '{"text":"hello"}'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { Broker, websocket } from 'culex-mqtt'

const app = Fastify()
const broker = new Broker()
// preClose, not onClose: the MQTT clients' upgraded sockets would keep the HTTP server from
// closing, and onClose only runs once it has. Closing the app closes the broker first.
app.addHook('preClose', async () => {
  await broker.close()
})

broker.on('clientConnect', (client) => app.log.info(`mqtt client ${client.id} connected`))

app.get('/clients', async () => ({ connected: broker.connectedClients }))
app.post<{ Body: { text?: string } }>('/broadcast', async (request, reply) => {
  await broker.publish({ topic: 'broadcast', payload: request.body?.text ?? '', qos: 1 })
  return reply.code(202).send({ sent: true })
})

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
await broker.listen(websocket({ server: app.server, path: '/mqtt' }))
console.log(`fastify and mqtt-over-websocket listening on port ${(app.server.address() as AddressInfo).port}`)

process.once('SIGINT', () => void app.close())
process.once('SIGTERM', () => void app.close())
