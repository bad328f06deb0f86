/**
 * The dashboard's handler over real HTTP, against a real broker and real `mqtt` clients: the page
 * and its assets, the JSON API (stats, clients, details, kick, bans), Server-Sent Events, HTTP
 * Basic access through `authorizeAdmin`, the cross-origin refusal of state-changing requests, and
 * mounting under a prefix in Express, Fastify and node:http.
 */
import assert from 'node:assert/strict'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import { dashboard, type DashboardClient, type DashboardClientDetail, type DashboardStats } from '../../src/dashboard/handler.js'
import type { Broker } from '../../src/broker.js'
import { once, until, withBroker } from '../helpers/index.js'

async function listen(handler: RequestListener): Promise<{ base: string; server: Server }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

async function json<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init)
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
  return { status: res.status, body: (await res.json()) as T }
}

/** Reads a Server-Sent Events stream: `next()` resolves with the next `data:` event, parsed. */
async function openEvents(url: string): Promise<{ next(): Promise<DashboardStats>; close(): void }> {
  const abort = new AbortController()
  const res = await fetch(url, { signal: abort.signal })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = ''
  return {
    async next() {
      for (;;) {
        let end: number
        while ((end = text.indexOf('\n\n')) !== -1) {
          const block = text.slice(0, end)
          text = text.slice(end + 2)
          const data = block.split('\n').filter((line) => line.startsWith('data: '))
          if (data.length > 0) return JSON.parse(data.map((line) => line.slice(6)).join('\n')) as DashboardStats
        }
        const { value, done } = await reader.read()
        assert.ok(!done, 'the stream ended early')
        text += decoder.decode(value, { stream: true })
      }
    },
    close() {
      abort.abort()
      reader.cancel().catch(() => {})
    },
  }
}

const KICK = { method: 'POST', headers: { 'X-Culex-Request': '1' } }

describe('the JSON API', () => {
  test('stats, the clients list with search, one client’s details with its subscriptions, bans', async () => {
    await withBroker({}, async (b) => {
      await b.connect({ clientId: 'other', username: 'bob' })
      const { base, server } = await listen(dashboard(b.broker))
      const sensor = await b.connect({ clientId: 'sensor-1', username: 'alice', keepalive: 42 })
      await sensor.subscribeAsync('sensors/#', { qos: 1 })
      b.broker.ban({ username: 'mallory', reason: 'tests' })
      try {
        const stats = await json<DashboardStats>(`${base}/api/v1/stats`)
        assert.equal(stats.status, 200)
        assert.equal(stats.body.clients.connected, 2)
        assert.equal(stats.body.subscriptions.total, 1)
        assert.equal(typeof stats.body.version, 'string')
        assert.equal(typeof stats.body.eventLoopDelayMs, 'number')

        const list = await json<{ clients: DashboardClient[] }>(`${base}/api/v1/clients`)
        assert.deepEqual(list.body.clients.map((c) => c.id), ['other', 'sensor-1'])
        const one = list.body.clients.find((c) => c.id === 'sensor-1')
        assert.equal(one?.username, 'alice')
        assert.equal(one?.subscriptions, 1)
        assert.equal(one?.remoteAddress, '127.0.0.1')
        assert.equal(typeof one?.connectedAt, 'number', 'connected after the dashboard was created: the time is known')
        assert.equal(list.body.clients.find((c) => c.id === 'other')?.connectedAt, null, 'connected before: unknown')
        assert.deepEqual((await json<{ clients: DashboardClient[] }>(`${base}/api/v1/clients?q=ALI`)).body.clients.map((c) => c.id), ['sensor-1'])
        assert.deepEqual((await json<{ clients: DashboardClient[] }>(`${base}/api/v1/clients?q=127.0.0`)).body.clients.length, 2)

        const detail = await json<DashboardClientDetail>(`${base}/api/v1/clients/sensor-1`)
        assert.equal(detail.status, 200)
        assert.equal(detail.body.protocolVersion, 4)
        assert.equal(detail.body.keepAlive, 42)
        assert.equal(detail.body.transport, 'tcp')
        assert.equal(detail.body.inflight, 0)
        assert.equal(detail.body.queued, 0)
        assert.deepEqual(detail.body.subscriptions.map((s) => [s.topicFilter, s.qos]), [['sensors/#', 1]])
        assert.equal((await json(`${base}/api/v1/clients/nobody`)).status, 404)

        const bans = await json<{ bans: { username?: string }[] }>(`${base}/api/v1/bans`)
        assert.deepEqual(bans.body.bans.map((ban) => ban.username), ['mallory'])
        assert.equal((await json(`${base}/api/v1/stats`, { method: 'POST' })).status, 405)
        assert.equal((await json(`${base}/api/v1/unknown`)).status, 404)
      } finally {
        await stop(server)
      }
    })
  })

  test('POST api/v1/clients/:id/kick disconnects the client; without X-Culex-Request or from another origin it is refused with 403', async () => {
    await withBroker({}, async (b) => {
      const client = await b.connect({ clientId: 'kick-me' })
      const { base, server } = await listen(dashboard(b.broker))
      try {
        const url = `${base}/api/v1/clients/kick-me/kick`
        assert.equal((await json(url, { method: 'POST' })).status, 403, 'no custom header: a cross-site form could send this')
        const crossOrigin = await json(url, { method: 'POST', headers: { 'X-Culex-Request': '1', Origin: 'http://evil.example' } })
        assert.equal(crossOrigin.status, 403, 'another origin')
        assert.equal((await json(url, { method: 'GET' })).status, 405)
        assert.ok(client.connected, 'refused requests left the client alone')

        const closed = once(client, 'close')
        const kicked = await json<{ kicked: string }>(url, { method: 'POST', headers: { 'X-Culex-Request': '1', Origin: base } })
        assert.deepEqual(kicked, { status: 200, body: { kicked: 'kick-me' } })
        await closed
        assert.equal((await json(url, KICK)).status, 404, 'gone: nothing to kick')
      } finally {
        await stop(server)
      }
    })
  })

  test('GET api/v1/events streams text/event-stream with a stats snapshot per event, and stops when the client goes away', async () => {
    await withBroker({}, async (b) => {
      // The broker, its stats() counted.
      let snapshots = 0
      const source = Object.assign(Object.create(b.broker) as Broker, {
        stats: () => {
          snapshots++
          return b.broker.stats()
        },
      })
      const { base, server } = await listen(dashboard(source, { eventIntervalMs: 50 }))
      let sockets = 0
      server.on('connection', (socket) => {
        sockets++
        socket.once('close', () => sockets--)
      })
      try {
        const first = await openEvents(`${base}/api/v1/events`)
        const events = [await first.next(), await first.next()]
        assert.ok((events[1]?.time ?? 0) >= (events[0]?.time ?? Infinity))
        assert.equal(events[0]?.clients.connected, 0)
        assert.equal(typeof events[0]?.eventLoopDelayMs, 'number')
        first.close()
        await until(() => sockets === 0, 5000, 'the first stream’s connection to close')

        // A second stream: between its first event and its second (one interval), only its own
        // timer takes a snapshot; the first stream's timer, were it still running, would add one.
        const second = await openEvents(`${base}/api/v1/events`)
        await second.next()
        const before = snapshots
        await second.next()
        assert.equal(snapshots - before, 1, 'the first stream’s timer stopped')
        second.close()
      } finally {
        await stop(server)
      }
    })
  })

  test('the page, its module, stylesheet and uPlot are served; the page has the title, escaped', async () => {
    await withBroker({}, async (b) => {
      const { base, server } = await listen(dashboard(b.broker, { title: 'Plant <7>' }))
      try {
        const page = await fetch(`${base}/`)
        assert.equal(page.status, 200)
        assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
        assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/)
        const html = await page.text()
        assert.match(html, /<title>Plant &#60;7&#62;<\/title>/)
        for (const [path, type] of [['app.js', 'text/javascript'], ['style.css', 'text/css'], ['vendor/uPlot.esm.js', 'text/javascript'], ['vendor/uPlot.min.css', 'text/css']]) {
          const res = await fetch(`${base}/${path}`)
          assert.equal(res.status, 200, path)
          assert.match(res.headers.get('content-type') ?? '', new RegExp(`^${type}`), path)
          assert.ok((await res.text()).length > 100, path)
        }
      } finally {
        await stop(server)
      }
    })
  })
})

describe('access', () => {
  test('with authorizeAdmin every request needs HTTP Basic credentials it accepts (async): 401 with WWW-Authenticate otherwise', async () => {
    await withBroker({}, async (b) => {
      const asked: string[] = []
      const handler = dashboard(b.broker, {
        authorizeAdmin: async ({ username, password, request }) => {
          asked.push(`${username}:${request.url ?? ''}`)
          await new Promise((resolve) => setImmediate(resolve))
          return username === 'admin' && password === 's3cret:x'
        },
      })
      const { base, server } = await listen(handler)
      const basic = (user: string, password: string): string => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')
      try {
        for (const path of ['/', '/api/v1/stats', '/api/v1/events', '/app.js']) {
          const res = await fetch(base + path)
          assert.equal(res.status, 401, path)
          assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="Culex dashboard"/)
        }
        assert.equal((await fetch(`${base}/api/v1/stats`, { headers: { Authorization: basic('admin', 'wrong') } })).status, 401)
        assert.equal((await fetch(`${base}/api/v1/clients/x/kick`, { ...KICK, headers: { ...KICK.headers, Authorization: basic('eve', 's3cret:x') } })).status, 401)
        const ok = await fetch(`${base}/api/v1/stats`, { headers: { Authorization: basic('admin', 's3cret:x') } })
        assert.equal(ok.status, 200)
        assert.deepEqual(asked, ['admin:/api/v1/stats', 'eve:/api/v1/clients/x/kick', 'admin:/api/v1/stats'], 'asked only when credentials came, with the request')
      } finally {
        await stop(server)
      }
    })
  })
})

describe('mounting', () => {
  test('Express: app.use("/culex", dashboard(broker)) serves the page at /culex/ (redirecting /culex there), the API below it, and leaves other paths to the app', async () => {
    await withBroker({}, async (b) => {
      await b.connect({ clientId: 'express-seen' })
      const app = express()
      app.use('/culex', dashboard(b.broker))
      app.use((_req, res) => {
        res.status(404).send('express 404')
      })
      const server: Server = await new Promise((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s))
      })
      try {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        const bare = await fetch(`${base}/culex`, { redirect: 'manual' })
        assert.equal(bare.status, 308)
        assert.equal(bare.headers.get('location'), '/culex/', 'relative URLs in the page need the slash')
        const page = await fetch(`${base}/culex/`)
        assert.equal(page.status, 200)
        assert.match(await page.text(), /<script type="module" src="app.js">/)
        const list = await json<{ clients: DashboardClient[] }>(`${base}/culex/api/v1/clients`)
        assert.deepEqual(list.body.clients.map((c) => c.id), ['express-seen'])
        assert.equal((await fetch(`${base}/culex/vendor/uPlot.esm.js`)).status, 200)
        assert.equal(await (await fetch(`${base}/culex/nothing`)).text(), 'express 404')
        assert.equal(await (await fetch(`${base}/api/v1/stats`)).text(), 'express 404', 'not served outside the mount path')
      } finally {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      }
    })
  })

  test('Fastify under a prefix and node:http with the prefix option: the full URL is routed', async () => {
    await withBroker({}, async (b) => {
      const fastify = Fastify()
      await fastify.register(
        async (scope) => {
          const handler = dashboard(b.broker, { prefix: '/culex' })
          for (const path of ['/', '/*']) {
            scope.all(path, (req, reply) => {
              reply.hijack()
              handler(req.raw, reply.raw)
            })
          }
        },
        { prefix: '/culex' },
      )
      const { base, server } = await listen(dashboard(b.broker, { prefix: '/admin' }))
      try {
        const fastifyBase = await fastify.listen({ port: 0, host: '127.0.0.1' })
        assert.equal((await fetch(`${fastifyBase}/culex/`)).status, 200)
        assert.equal((await fetch(`${fastifyBase}/culex`, { redirect: 'manual' })).headers.get('location'), '/culex/')
        assert.equal((await json<DashboardStats>(`${fastifyBase}/culex/api/v1/stats`)).body.clients.connected, 0)
        assert.equal((await fetch(`${base}/admin/`)).status, 200)
        assert.equal((await json<DashboardStats>(`${base}/admin/api/v1/stats`)).status, 200)
      } finally {
        await fastify.close()
        await stop(server)
      }
    })
  })
})
