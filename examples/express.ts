// One Express app, one port: a REST API and MQTT over WebSocket at /mqtt.
// Run: npx tsx examples/express.ts   then open http://localhost:3000/ (a page that connects over
// WebSocket), or: curl -X POST localhost:3000/devices/lamp-1/command -H 'content-type: application/json' -d '{"on":true}'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import express from 'express'
import { Broker, websocket } from 'culex-mqtt'

const broker = new Broker()
const app = express()
app.use(express.json())

// Device telemetry reaches the app through typed events; keep the latest reading per device.
const latest = new Map<string, string>()
broker.on('publish', (message, client) => {
  const match = /^devices\/([\w-]+)\/telemetry$/.exec(message.topic)
  if (client !== null && match?.[1]) latest.set(match[1], message.payload.toString())
})

// REST -> broker -> device.
app.post('/devices/:id/command', async (req, res) => {
  const id = req.params.id
  if (!/^[\w-]+$/.test(id)) {
    res.status(400).json({ error: 'bad device id' })
    return
  }
  await broker.publish({ topic: `devices/${id}/command`, payload: JSON.stringify(req.body ?? {}), qos: 1 })
  res.status(202).json({ sent: true })
})

app.get('/devices/:id/telemetry', (req, res) => {
  const reading = latest.get(req.params.id)
  if (reading === undefined) res.status(404).json({ error: 'no reading yet' })
  else res.json({ id: req.params.id, reading })
})

// A page that speaks MQTT from the browser, with the mqtt package's browser bundle.
const bundle = join(dirname(createRequire(import.meta.url).resolve('mqtt/package.json')), 'dist', 'mqtt.min.js')
app.get('/mqtt.min.js', (_req, res) => res.sendFile(bundle))
app.get('/', (_req, res) => {
  res.type('html').send(`<!doctype html>
<meta charset="utf-8"><title>Culex in the browser</title>
<p id="status">connecting...</p><ul id="messages"></ul>
<script src="/mqtt.min.js"></script>
<script>
  const client = mqtt.connect('ws://' + location.host + '/mqtt', { clientId: 'browser-' + Math.random().toString(16).slice(2) })
  client.on('connect', () => client.subscribe('browser/news', () => { document.getElementById('status').textContent = 'subscribed' }))
  client.on('message', (topic, payload) => {
    const li = document.createElement('li')
    li.textContent = payload.toString()
    document.getElementById('messages').append(li)
  })
</script>`)
})
app.post('/news', async (req, res) => {
  await broker.publish({ topic: 'browser/news', payload: String((req.body as { text?: unknown })?.text ?? ''), qos: 0 })
  res.status(202).end()
})

const server = app.listen(Number(process.env.PORT ?? 3000), () => {
  console.log(`http and mqtt-over-websocket listening on port ${(server.address() as AddressInfo).port}`)
})
await broker.listen(websocket({ server, path: '/mqtt' }))

async function shutdown(): Promise<void> {
  await broker.close()
  server.close()
}
process.once('SIGINT', () => void shutdown())
process.once('SIGTERM', () => void shutdown())
