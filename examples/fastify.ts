// Fastify and MQTT over WebSocket on one port, with the broker's dashboard at /culex/; the broker
// shuts down with the Fastify instance.
// Run: npx tsx examples/fastify.ts   then: curl -X POST localhost:3000/broadcast -H 'content-type: application/json' -d '{"text":"hello"}'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { Broker, websocket } from 'culex-mqtt'
import { culexDashboard } from 'culex-mqtt/fastify'

const app = Fastify()
const broker = new Broker()
// preClose runs before Fastify closes its HTTP server: the broker closes the MQTT connections
// (MQTT 5 clients are told "server shutting down") and detaches, so the server closes at once.
// onClose (after the server) would finish too, once the attachment saw the server stop listening
// and dropped its WebSocket clients (close code 1001) itself, but not as gracefully.
app.addHook('preClose', async () => {
  await broker.close()
})

broker.on('clientConnect', (client) => app.log.info(`mqtt client ${client.id} connected`))

app.get('/clients', async () => ({ connected: broker.connectedClients }))
app.post<{ Body: { text?: string } }>('/broadcast', async (request, reply) => {
  await broker.publish({ topic: 'broadcast', payload: request.body?.text ?? '', qos: 1 })
  return reply.code(202).send({ sent: true })
})

// The dashboard and its JSON API under /culex/. Open to whoever reaches this port: on a network,
// give it authorizeAdmin (see docs/dashboard.md).
await app.register(culexDashboard, { broker, prefix: '/culex' })

await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
await broker.listen(websocket({ server: app.server, path: '/mqtt' }))
console.log(`fastify and mqtt-over-websocket listening on port ${(app.server.address() as AddressInfo).port}`)

process.once('SIGINT', () => void app.close())
process.once('SIGTERM', () => void app.close())
