// An Express app that runs a broker and serves what operations need next to its own routes:
// Prometheus metrics (the app's own prom-client registry, Node's default metrics and the
// broker's in one /metrics), Kubernetes health probes, and a graceful drain on SIGTERM.
// Run: npx tsx examples/operations.ts   then curl localhost:3000/metrics, /ops/healthz, /ops/readyz
import type { AddressInfo } from 'node:net'
import express from 'express'
import { collectDefaultMetrics, Counter, Registry } from 'prom-client'
import { Broker, operationsHandler, tcp } from 'culex-mqtt'
import { registerMetrics } from 'culex-mqtt/prometheus'

const broker = new Broker({
  // Mosquitto's $SYS tree, refreshed every 10 s (the default): mosquitto_sub -t '$SYS/#' -v
  sys: { interval: 10 },
  // Limits against abusive clients, checked at accept (before TLS or CONNECT).
  protection: { maxConnectionsPerIp: 100, connectRatePerIp: 20, flapping: true },
})

// One registry for the whole app: its own metrics, Node's, and the broker's.
const registry = new Registry()
collectDefaultMetrics({ register: registry })
registerMetrics(broker, { registry })
const commands = new Counter({ name: 'app_commands_total', help: 'Commands sent to devices', registers: [registry] })

const app = express()
app.get('/metrics', async (_req, res) => {
  res.type(registry.contentType).send(await registry.metrics())
})
// /ops/healthz (liveness) and /ops/readyz (readiness: 503 while draining); metrics served above.
app.use('/ops', operationsHandler(broker, { metrics: false }))
app.post('/devices/:id/reboot', async (req, res) => {
  await broker.publish({ topic: `devices/${req.params.id}/cmd`, payload: 'reboot', qos: 1 })
  commands.inc()
  res.status(202).end()
})

const mqttPort = Number(process.env.MQTT_PORT ?? 1883)
const listener = await broker.listen(tcp({ port: mqttPort }))
const server = app.listen(Number(process.env.PORT ?? 3000), () => {
  console.log(`http listening on port ${(server.address() as AddressInfo).port}`)
  console.log(`mqtt listening on port ${(listener.address() as AddressInfo).port}`)
})

// Kubernetes sends SIGTERM, waits terminationGracePeriodSeconds (30 s by default), then SIGKILL:
// drain within that, spreading the disconnects so the clients do not all reconnect at once.
process.once('SIGTERM', () => {
  console.log('draining')
  broker
    .drain({ timeoutMs: 20_000, spreadMs: 5_000 })
    .then(() => new Promise<void>((resolve) => server.close(() => resolve())))
    .then(() => {
      console.log('stopped')
      process.exit(0)
    }, (error: unknown) => {
      console.error(error)
      process.exit(1)
    })
})
