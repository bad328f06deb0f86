// One Express app, one port: a REST API and MQTT over WebSocket at /mqtt, for browsers that hold
// the app's session cookie.
// Run: npx tsx examples/express.ts   then open http://localhost:3000/ (the page gets a session
// cookie and connects over WebSocket with it), or:
//   curl -X POST localhost:3000/news -H 'content-type: application/json' -d '{"text":"hi"}'
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import express from 'express'
import { Broker, websocket, type AuthenticateRequest } from 'culex-mqtt'

// The app's sessions. A real app has its session store (express-session ...); the point here is
// that the browser's WebSocket upgrade request carries the same cookie as its page requests.
const sessions = new Set<string>()

function sessionCookie(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=')
    if (name === 'session') return value.join('=')
  }
  return undefined
}

function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host
  } catch {
    return undefined // 'null' (a sandboxed page) or garbage
  }
}

/** MQTT over WebSocket for holders of a session cookie only, and never from another site's page. */
function authenticate({ request }: AuthenticateRequest): boolean | { reasonCode: number } {
  const notAuthorized = { reasonCode: 5 } // CONNACK 5; MQTT 5 clients get 0x87
  if (request === undefined) return notAuthorized
  // A browser names the page that opened the WebSocket: refuse other sites' pages, which the
  // browser might otherwise let ride on this site's cookie.
  if (request.headers.origin !== undefined && originHost(request.headers.origin) !== request.headers.host) return notAuthorized
  const session = sessionCookie(request.headers.cookie)
  return session !== undefined && sessions.has(session) ? true : notAuthorized
}

const broker = new Broker({ authenticate })
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
app.get('/', (req, res) => {
  if (!sessions.has(sessionCookie(req.headers.cookie) ?? '')) {
    const session = randomBytes(18).toString('base64url')
    sessions.add(session)
    res.cookie('session', session, { httpOnly: true, sameSite: 'strict', path: '/' })
  }
  res.type('html').send(`<!doctype html>
<meta charset="utf-8"><title>Culex in the browser</title>
<p id="status">connecting...</p><ul id="messages"></ul>
<script src="/mqtt.min.js"></script>
<script>
  // The browser sends the session cookie with the WebSocket upgrade: no credentials in the page.
  const status = document.getElementById('status')
  const client = mqtt.connect('ws://' + location.host + '/mqtt', { clientId: 'browser-' + Math.random().toString(16).slice(2), reconnectPeriod: 0 })
  client.on('connect', () => client.subscribe('browser/news', () => { status.textContent = 'subscribed' }))
  client.on('error', (error) => { status.textContent = 'refused: ' + error.message })
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

// The broker first: it closes the MQTT connections (MQTT 5 clients are told "server shutting
// down") and detaches from the server, so server.close() then completes. The other order,
// server.close(cb) first, completes too: the attachment sees the server stop listening and closes
// its WebSocket connections (close code 1001) itself.
async function shutdown(): Promise<void> {
  await broker.close()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
process.once('SIGINT', () => void shutdown())
process.once('SIGTERM', () => void shutdown())
