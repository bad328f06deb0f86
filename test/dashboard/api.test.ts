/**
 * The dashboard's handler over real HTTP, against a real broker and real `mqtt` clients: the page
 * and its assets, the JSON API (stats, clients, details, kick, bans), Server-Sent Events, HTTP
 * Basic access through `authorizeAdmin`, the cross-origin refusal of state-changing requests, and
 * mounting under a prefix in Express, Fastify and node:http.
 */
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import {
  dashboard,
  type DashboardBridge,
  type DashboardClient,
  type DashboardClientDetail,
  type DashboardListener,
  type DashboardRetained,
  type DashboardStats,
  type DashboardSubscriptions,
} from '../../src/dashboard/handler.js'
import type { Broker } from '../../src/broker.js'
import { freePort, once, until, withBroker } from '../helpers/index.js'

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
async function openEvents(url: string, headers: Record<string, string> = {}): Promise<{ next(): Promise<DashboardStats>; close(): void }> {
  const abort = new AbortController()
  const res = await fetch(url, { signal: abort.signal, headers })
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

/** The broker as a dashboard source whose `stats()` calls are counted. */
function countingStats(broker: Broker): { source: Broker; snapshots: () => number } {
  let count = 0
  const source = Object.assign(Object.create(broker) as Broker, {
    stats: () => {
      count++
      return broker.stats()
    },
  })
  return { source, snapshots: () => count }
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
      const { source, snapshots } = countingStats(b.broker)
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
        const before = snapshots()
        await second.next()
        assert.equal(snapshots() - before, 1, 'the first stream’s timer stopped')
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

describe('subscriptions, retained messages, listeners and bridges', () => {
  test('GET api/v1/subscriptions: topic filters by subscribers, searchable, with their client ids', async () => {
    await withBroker({}, async (b) => {
      const { base, server } = await listen(dashboard(b.broker))
      try {
        for (const id of ['a', 'b', 'c']) await (await b.connect({ clientId: id })).subscribeAsync('sensors/+/t', { qos: 1 })
        await (await b.connect({ clientId: 'd' })).subscribeAsync(['alarms/#', 'sensors/+/t'])
        await (await b.connect({ clientId: 'e' })).subscribeAsync('alarms/#')
        await (await b.connect({ clientId: 'f' })).subscribeAsync('$share/g/jobs')
        const all = await json<DashboardSubscriptions>(`${base}/api/v1/subscriptions`)
        assert.equal(all.status, 200)
        assert.deepEqual(all.body, {
          total: 3,
          filters: [
            { topicFilter: 'sensors/+/t', subscribers: 4, clientIds: ['a', 'b', 'c', 'd'] },
            { topicFilter: 'alarms/#', subscribers: 2, clientIds: ['d', 'e'] },
            { topicFilter: '$share/g/jobs', subscribers: 1, clientIds: ['f'] },
          ],
        })
        assert.deepEqual((await json<DashboardSubscriptions>(`${base}/api/v1/subscriptions?q=alarm`)).body.filters.map((f) => f.topicFilter), ['alarms/#'])
        const limited = await json<DashboardSubscriptions>(`${base}/api/v1/subscriptions?limit=1`)
        assert.deepEqual([limited.body.total, limited.body.filters.length], [3, 1])
      } finally {
        await stop(server)
      }
    })
  })

  test('GET api/v1/retained browses by filter (text or base64 previews); DELETE removes one as an empty retained message would, same-origin only', async () => {
    await withBroker({ sys: { interval: 1 } }, async (b) => {
      const { base, server } = await listen(dashboard(b.broker))
      try {
        await until(() => b.broker.getRetained('$SYS/#').length > 0, 5000, 'the $SYS tree')
        await b.broker.publish({ topic: 'site/a/temp', payload: '21.5', qos: 1, retain: true })
        await b.broker.publish({ topic: 'site/b/temp', payload: Buffer.from([0xff, 0x00, 0xfe]), retain: true })
        await b.broker.publish({ topic: 'site/big', payload: 'a' + 'é'.repeat(600), retain: true })
        await b.broker.publish({ topic: 'other', payload: 'x', retain: true })
        const site = await json<DashboardRetained>(`${base}/api/v1/retained?filter=site/%23`)
        assert.equal(site.status, 200)
        assert.equal(site.body.total, 3)
        const [a, bin, big] = site.body.messages
        assert.deepEqual(a, { topic: 'site/a/temp', qos: 1, size: 4, payload: '21.5', encoding: 'utf8', truncated: false })
        assert.deepEqual(bin, { topic: 'site/b/temp', qos: 0, size: 3, payload: '/wD+', encoding: 'base64', truncated: false })
        assert.equal(big?.size, 1201)
        assert.equal(big?.encoding, 'utf8', 'a preview cut inside a character is still text')
        assert.equal(big?.truncated, true)
        assert.equal(big?.payload, 'a' + 'é'.repeat(511), 'the 1,024th byte is half an é: the preview stops before it')
        assert.equal((await json<DashboardRetained>(`${base}/api/v1/retained`)).body.total, 4, 'default filter #')
        assert.equal((await json(`${base}/api/v1/retained?filter=a/%23/b`)).status, 400, 'an invalid filter')
        assert.equal((await json(`${base}/api/v1/retained?filter=%24share/g/site/%23`)).status, 400, 'a shared subscription is not a filter of retained messages')
        assert.deepEqual((await json<DashboardRetained>(`${base}/api/v1/retained?filter=site/+/temp`)).body.messages.map((m) => m.topic), ['site/a/temp', 'site/b/temp'], 'a + in the query is the wildcard')
        await b.broker.publish({ topic: 'bin/big', payload: Buffer.alloc(2000, 0xff), retain: true })
        await b.broker.publish({ topic: 'bom', payload: Buffer.from('\ufeffhi'), retain: true })
        const [binBig] = (await json<DashboardRetained>(`${base}/api/v1/retained?filter=bin/big`)).body.messages
        assert.deepEqual([binBig?.encoding, Buffer.from(binBig?.payload ?? '', 'base64').length, binBig?.truncated], ['base64', 1024, true])
        assert.equal((await json<DashboardRetained>(`${base}/api/v1/retained?filter=bom`)).body.messages[0]?.payload, '\ufeffhi', 'a byte-order mark is shown, not dropped')
        const sys = await json<DashboardRetained>(`${base}/api/v1/retained?filter=%24SYS/%23`)
        assert.ok(sys.body.total > 0, "the broker's own $SYS topics can be browsed")

        // A subscriber sees the deletion as any client's: the topic has no retained message afterwards.
        const url = `${base}/api/v1/retained?topic=site/a/temp`
        assert.equal((await json(url, { method: 'DELETE' })).status, 403, 'no custom header')
        assert.equal((await json(url, { method: 'DELETE', headers: { 'X-Culex-Request': '1', Origin: 'http://evil.example' } })).status, 403, 'another origin')
        assert.equal(b.broker.getRetained('site/a/temp').length, 1, 'refused requests deleted nothing')
        assert.deepEqual(await json(url, { method: 'DELETE', headers: { 'X-Culex-Request': '1' } }), { status: 200, body: { deleted: 'site/a/temp' } })
        assert.deepEqual(b.broker.getRetained('site/#').map((m) => m.topic).sort(), ['site/b/temp', 'site/big'])
        assert.equal((await json(url, { method: 'DELETE', headers: { 'X-Culex-Request': '1' } })).status, 404, 'nothing left to delete')
        const del = (topic: string): Promise<{ status: number }> => json(`${base}/api/v1/retained?topic=${encodeURIComponent(topic)}`, { method: 'DELETE', headers: { 'X-Culex-Request': '1' } })
        assert.equal((await del('site/#')).status, 400, 'wildcards are not a topic name')
        assert.equal((await del('a\u0000b')).status, 400, 'nor is a topic with U+0000')
        assert.equal((await del('$SYS/broker/version')).status, 400, "$SYS is the broker's own")
        assert.equal(b.broker.getRetained('$SYS/broker/version').length, 1)
        assert.equal((await json(`${base}/api/v1/retained`, { method: 'PUT' })).status, 405)
        const late = await b.connect({ clientId: 'late' })
        const got: string[] = []
        late.on('message', (topic) => got.push(topic))
        await late.subscribeAsync('site/#')
        await until(() => got.length === 2, 5000, 'the two retained messages left')
        assert.deepEqual(got.sort(), ['site/b/temp', 'site/big'])
      } finally {
        await stop(server)
      }
    })
  })

  test('GET api/v1/listeners and api/v1/bridges: the open listeners with their connections, the bridges with their state and outbox', async () => {
    await withBroker({}, async (b) => {
      const { base, server } = await listen(dashboard(b.broker))
      try {
        await b.connect({ clientId: 'one' })
        const { listeners } = (await json<{ listeners: DashboardListener[] }>(`${base}/api/v1/listeners`)).body
        assert.deepEqual(listeners, [{ transport: 'tcp', address: `127.0.0.1:${b.port}`, connections: 1 }])
        assert.deepEqual((await json<{ bridges: DashboardBridge[] }>(`${base}/api/v1/bridges`)).body.bridges, [])

        // A bridge whose remote never answers: its outbox keeps what it must send.
        const port = await freePort()
        const handle = await b.broker.bridge({ name: 'cloud', url: `mqtt://site1:s3cret@127.0.0.1:${port}`, topics: [{ filter: 'up/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
        await b.broker.publish({ topic: 'up/1', payload: 'x', qos: 1 })
        await until(() => (b.broker.getSession('bridge:cloud')?.inflight ?? 0) + (b.broker.getSession('bridge:cloud')?.queued ?? 0) === 1, 5000, 'the message in the outbox')
        const { bridges } = (await json<{ bridges: DashboardBridge[] }>(`${base}/api/v1/bridges`)).body
        assert.equal(bridges.length, 1)
        assert.deepEqual({ ...bridges[0], inflight: undefined, queued: undefined }, { name: 'cloud', url: `mqtt://site1:***@127.0.0.1:${port}`, connected: false, localClientId: 'bridge:cloud', inflight: undefined, queued: undefined }, 'the password in the URL is masked')
        assert.equal((bridges[0]?.inflight ?? 0) + (bridges[0]?.queued ?? 0), 1)
        await handle.close()
        assert.deepEqual(b.broker.bridges, [])
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

describe('access through the broker', () => {
  test('the broker’s authenticate hook checks the password first (as transport "http"); authorizeAdmin then decides: 401 refused, 403 not an administrator, 200', async () => {
    const hookSaw: Array<{ username: string | undefined; transport: string; path: string | undefined; address: string | undefined }> = []
    const users: Record<string, string> = { admin: 'pw-admin', viewer: 'pw-viewer' }
    await withBroker(
      {
        authenticate: ({ username, password, transport, request, remoteAddress }) => {
          hookSaw.push({ username, transport, path: request?.url, address: remoteAddress })
          return username !== undefined && users[username] === password?.toString()
        },
      },
      async (b) => {
        const asked: Array<[string, boolean]> = []
        let clock = 1_000_000
        const handler = dashboard(b.broker, {
          now: () => clock,
          authorizeAdmin: ({ username, authenticated }) => {
            asked.push([username, authenticated])
            return username === 'admin'
          },
        })
        const { base, server } = await listen(handler)
        const basic = (user: string, password: string): Record<string, string> => ({ Authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') })
        try {
          assert.equal((await fetch(`${base}/api/v1/stats`, { headers: basic('admin', 'wrong') })).status, 401)
          assert.deepEqual(asked, [], 'credentials the broker refused never reach authorizeAdmin')
          const viewer = await fetch(`${base}/api/v1/stats`, { headers: basic('viewer', 'pw-viewer') })
          assert.equal(viewer.status, 403, 'a user the broker knows, but not an administrator')
          assert.equal((await fetch(`${base}/api/v1/stats`, { headers: basic('admin', 'pw-admin') })).status, 200)
          assert.deepEqual(asked, [['viewer', true], ['admin', true]])
          // The hook judges the user name and password alone: not the request (a cookie in it must not vouch for a user name).
          assert.deepEqual(hookSaw.map((h) => [h.username, h.transport, h.path, h.address]), [
            ['admin', 'http', undefined, '127.0.0.1'],
            ['viewer', 'http', undefined, '127.0.0.1'],
            ['admin', 'http', undefined, '127.0.0.1'],
          ])
          // Bans hold (once the 10 s an accepted login is trusted have passed): a banned user name is refused without asking the hook.
          clock += 10_001
          b.broker.ban({ username: 'admin' })
          assert.equal((await fetch(`${base}/api/v1/stats`, { headers: basic('admin', 'pw-admin') })).status, 401)
          assert.equal(hookSaw.length, 3)
          b.broker.unban({ username: 'admin' })
          await assert.rejects(b.broker.checkCredentials({ username: 'admin', password: 'x', transport: 'bridge' }), /reserved/, "the broker's bridges' transport cannot be claimed")
          // MQTT clients are unaffected: the same hook still decides their CONNECTs.
          await b.connect({ clientId: 'device', username: 'viewer', password: 'pw-viewer' })
        } finally {
          await stop(server)
        }
      },
    )
  })

  test('an accepted login is trusted for 10 s without a new check; 10 failed logins from an address get it 429 for a minute, other addresses not', async () => {
    let checks = 0
    await withBroker(
      {
        authenticate: ({ username, password }) => {
          checks++
          return username === undefined || (username === 'admin' && password?.toString() === 'pw')
        },
      },
      async (b) => {
        let clock = 1_000_000
        const { base, server } = await listen(dashboard(b.broker, { now: () => clock, authorizeAdmin: () => true }))
        const basic = (password: string): Record<string, string> => ({ Authorization: 'Basic ' + Buffer.from(`admin:${password}`).toString('base64') })
        /** A request from a given local address (127.0.0.x are all loopback on Linux). */
        const from = (localAddress: string, headers: Record<string, string>): Promise<{ status: number; retryAfter: string | undefined }> =>
          new Promise((resolve, reject) => {
            const request = httpRequest(`${base}/api/v1/stats`, { headers, localAddress }, (response) => {
              response.resume()
              resolve({ status: response.statusCode ?? 0, retryAfter: response.headers['retry-after'] })
            })
            request.on('error', reject)
            request.end()
          })
        try {
          assert.equal((await from('127.0.0.1', basic('pw'))).status, 200)
          assert.equal((await from('127.0.0.1', basic('pw'))).status, 200)
          assert.equal(checks, 1, 'the second request was not checked again')
          clock += 10_001
          assert.equal((await from('127.0.0.1', basic('pw'))).status, 200)
          assert.equal(checks, 2, 'checked again after 10 s')

          for (let i = 0; i < 10; i++) assert.equal((await from('127.0.0.1', basic(`guess-${i}`))).status, 401)
          const before = checks
          const throttled = await from('127.0.0.1', basic('guess-10'))
          assert.deepEqual(throttled, { status: 429, retryAfter: '60' })
          assert.equal(checks, before, 'refused without a password check')
          clock += 10_001
          assert.equal((await from('127.0.0.2', basic('pw'))).status, 200, 'another address is not throttled')
          assert.equal(checks, before + 1, 'its login was checked (the accepted one from before has expired)')
          assert.deepEqual(await from('127.0.0.1', basic('pw')), { status: 429, retryAfter: '50' }, 'even the right password waits')
          clock += 50_001
          assert.equal((await from('127.0.0.1', basic('pw'))).status, 200, 'a minute after the last failure')
        } finally {
          await stop(server)
        }
      },
    )
  })

  test('an event stream whose client left while its credentials were checked starts no timer', async () => {
    await withBroker({}, async (b) => {
      const { source, snapshots } = countingStats(b.broker)
      let release: () => void = () => {}
      let asked: () => void = () => {}
      const wasAsked = new Promise<void>((resolve) => (asked = resolve))
      let first = true
      const handler = dashboard(source, {
        eventIntervalMs: 50,
        authorizeAdmin: async () => {
          if (!first) return true
          first = false
          asked()
          await new Promise<void>((resolve) => (release = resolve))
          return true
        },
      })
      const { base, server } = await listen(handler)
      const closedOnServer = new Promise<void>((resolve) => server.once('request', (req) => req.socket.once('close', () => resolve())))
      const headers = { Authorization: 'Basic ' + Buffer.from('admin:x').toString('base64') }
      try {
        const abort = new AbortController()
        fetch(`${base}/api/v1/events`, { headers, signal: abort.signal }).catch(() => {})
        await wasAsked
        abort.abort()
        await closedOnServer
        release()
        // A second stream is the clock: between two of its events (one interval) only its own timer
        // takes a snapshot; a timer left running for the first would take another.
        const second = await openEvents(`${base}/api/v1/events`, headers)
        await second.next()
        const before = snapshots()
        await second.next()
        assert.equal(snapshots() - before, 1, 'no timer for the stream that left')
        second.close()
      } finally {
        await stop(server)
      }
    })
  })

  test('a throwing authenticate hook refuses the request (401) and is reported on hostError', async () => {
    await withBroker(
      {
        authenticate: ({ transport }) => {
          if (transport === 'http') throw new Error('directory down')
          return true
        },
      },
      async (b) => {
        const errors: string[] = []
        b.broker.on('hostError', (error) => errors.push(error.message))
        const { base, server } = await listen(dashboard(b.broker, { authorizeAdmin: () => true }))
        try {
          const res = await fetch(`${base}/`, { headers: { Authorization: 'Basic ' + Buffer.from('admin:x').toString('base64') } })
          assert.equal(res.status, 401)
          assert.deepEqual(errors, ['directory down'])
        } finally {
          await stop(server)
        }
      },
    )
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
