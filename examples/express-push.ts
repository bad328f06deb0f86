// HTTP request -> broker -> device: an Express app pushes notifications to phones over MQTT.
// Run: npx tsx examples/express-push.ts
//      curl -X POST localhost:3000/notify -H 'content-type: application/json' -d '{"device":"phone-1","text":"hi"}'
// A phone subscribes to devices/phone-1/notifications and gets {"text":"hi"}.
import type { AddressInfo } from 'node:net'
import express from 'express'
import { Broker, tcp } from 'culex-mqtt'

const broker = new Broker()
const mqttListener = await broker.listen(tcp({ port: Number(process.env.MQTT_PORT ?? 1883) }))

const app = express()
app.use(express.json())

app.post('/notify', async (req, res) => {
  const { device, text } = (req.body ?? {}) as { device?: unknown; text?: unknown }
  if (typeof device !== 'string' || !/^[\w-]+$/.test(device) || typeof text !== 'string') {
    res.status(400).json({ error: 'expected {"device": "<id>", "text": "<message>"}' })
    return
  }
  // QoS 1 so a phone that is offline with a persistent session gets it when it comes back.
  await broker.publish({ topic: `devices/${device}/notifications`, payload: JSON.stringify({ text }), qos: 1 })
  res.status(202).json({ queued: true })
})

app.get('/devices', (_req, res) => {
  res.json({ connected: broker.connectedClients })
})

const http = app.listen(Number(process.env.HTTP_PORT ?? 3000), () => {
  console.log(`http listening on port ${(http.address() as AddressInfo).port}`)
  console.log(`mqtt listening on port ${(mqttListener.address() as AddressInfo).port}`)
})

async function shutdown(): Promise<void> {
  http.close()
  await broker.close()
}
process.once('SIGINT', () => void shutdown())
process.once('SIGTERM', () => void shutdown())
