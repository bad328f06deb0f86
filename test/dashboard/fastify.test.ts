/**
 * `culex-mqtt/fastify`: the dashboard as a Fastify plugin, over real HTTP against a real broker and
 * real `mqtt` clients: the page and the API under the register prefix (nested prefixes too), the
 * kick and its cross-origin refusal, request bodies left alone, the host's own routes and parsers
 * untouched, 404 under the prefix, HTTP Basic through `authorizeAdmin`; and importing the module
 * loads no part of Fastify.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import type { DashboardClient, DashboardStats } from '../../src/dashboard/handler.js'
import { culexDashboard, type CulexDashboardPluginOptions } from '../../src/fastify.js'
import { once, withBroker, type TestBroker } from '../helpers/index.js'

async function json<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init)
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, url)
  return { status: res.status, body: (await res.json()) as T }
}

/** A Fastify app with routes of its own (`GET /hello`, a JSON `POST /echo`) and the plugin under `/culex`, listening on a free port. */
async function withApp(b: TestBroker, options: Omit<CulexDashboardPluginOptions, 'broker'>, body: (base: string, app: FastifyInstance) => Promise<void>): Promise<void> {
  const app = Fastify()
  app.get('/hello', async () => ({ hello: 'world' }))
  app.post('/echo', async (request) => ({ echoed: request.body }))
  await app.register(culexDashboard, { broker: b.broker, prefix: '/culex', ...options })
  try {
    await body(await app.listen({ port: 0, host: '127.0.0.1' }), app)
  } finally {
    await app.close()
  }
}

const KICK = { method: 'POST', headers: { 'X-Culex-Request': '1' } }

describe('fastify.register(culexDashboard, { broker, prefix })', () => {
  test('serves the page at <prefix>/ (redirecting <prefix> there), its assets, HEAD, and the JSON API', async () => {
    await withBroker({}, async (b) => {
      await withApp(b, { title: 'Plant 7' }, async (base) => {
        const page = await fetch(`${base}/culex/`)
        assert.equal(page.status, 200)
        assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
        assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/)
        const html = await page.text()
        assert.match(html, /<title>Plant 7<\/title>/)
        assert.match(html, /<script type="module" src="app.js">/)

        const bare = await fetch(`${base}/culex?x=1`, { redirect: 'manual' })
        assert.equal(bare.status, 308)
        assert.equal(bare.headers.get('location'), '/culex/?x=1', 'relative URLs in the page need the slash')

        const head = await fetch(`${base}/culex/`, { method: 'HEAD' })
        assert.equal(head.status, 200)
        assert.equal(await head.text(), '')
        for (const path of ['app.js', 'style.css', 'vendor/uPlot.esm.js', 'vendor/uPlot.min.css']) {
          assert.equal((await fetch(`${base}/culex/${path}`)).status, 200, path)
        }

        const stats = await json<DashboardStats>(`${base}/culex/api/v1/stats`)
        assert.equal(stats.status, 200)
        assert.equal(stats.body.clients.connected, 0)
        assert.equal(typeof stats.body.eventLoopDelayMs, 'number')
        const none = await json<{ clients: DashboardClient[] }>(`${base}/culex/api/v1/clients`)
        assert.deepEqual(none, { status: 200, body: { clients: [] } })
      })
    })
  })

  test('a real client appears in api/v1/clients; a POST kick without X-Culex-Request gets 403, with it disconnects the client', async () => {
    await withBroker({}, async (b) => {
      await withApp(b, {}, async (base) => {
        const client = await b.connect({ clientId: 'fastify-seen', username: 'alice' })
        const list = await json<{ clients: DashboardClient[] }>(`${base}/culex/api/v1/clients`)
        assert.deepEqual(list.body.clients.map((c) => [c.id, c.username]), [['fastify-seen', 'alice']])
        assert.equal((await json<DashboardStats>(`${base}/culex/api/v1/stats`)).body.clients.connected, 1)

        const kick = `${base}/culex/api/v1/clients/fastify-seen/kick`
        const refused = await json<{ error: string }>(kick, { method: 'POST' })
        assert.equal(refused.status, 403)
        assert.match(refused.body.error, /cross-origin/)
        // A form post (a body Fastify has no parser for by default) is refused by the dashboard, not by Fastify (415).
        const form = await json<{ error: string }>(kick, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'a=b' })
        assert.equal(form.status, 403)
        assert.equal(client.connected, true, 'refused requests leave the client alone')

        const closed = once(client, 'close')
        const kicked = await json<{ kicked: string }>(kick, KICK)
        assert.deepEqual(kicked, { status: 200, body: { kicked: 'fastify-seen' } })
        await closed
        assert.deepEqual((await json<{ clients: DashboardClient[] }>(`${base}/culex/api/v1/clients`)).body.clients, [])
        // An empty JSON body is not Fastify's 400 either: the dashboard answers.
        const again = await json<{ error: string }>(kick, { method: 'POST', headers: { ...KICK.headers, 'Content-Type': 'application/json' } })
        assert.deepEqual(again, { status: 404, body: { error: 'no such client' } })
      })
    })
  })

  test('the app’s own routes and JSON parser still work; a path under the prefix the dashboard does not serve gets 404', async () => {
    await withBroker({}, async (b) => {
      await withApp(b, {}, async (base) => {
        assert.deepEqual(await json(`${base}/hello`), { status: 200, body: { hello: 'world' } })
        const echo = await json(`${base}/echo`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' })
        assert.deepEqual(echo, { status: 200, body: { echoed: { a: 1 } } })
        assert.equal((await json(`${base}/api/v1/stats`)).status, 404, 'not served outside the prefix')

        for (const path of ['/culex/nothing', '/culex/api/v1/nothing', '/culex/api/v2/stats']) {
          const missing = await json<{ error: string }>(base + path)
          assert.equal(missing.status, 404, path)
        }
        assert.equal((await fetch(`${base}/culex/api/v1/stats`, { method: 'PUT' })).status, 404, 'no route for methods the dashboard never answers')
        for (const method of ['POST', 'DELETE']) assert.equal((await json(`${base}/culex/api/v1/stats`, { method })).status, 405, `${method} reaches the dashboard`)
      })
    })
  })

  test('nested prefixes: the handler strips the full prefix of the plugin’s instance', async () => {
    await withBroker({}, async (b) => {
      const app = Fastify()
      await app.register(
        async (admin) => {
          await admin.register(culexDashboard, { broker: b.broker, prefix: '/culex' })
        },
        { prefix: '/admin' },
      )
      try {
        const base = await app.listen({ port: 0, host: '127.0.0.1' })
        assert.equal((await fetch(`${base}/admin/culex/`)).status, 200)
        assert.equal((await fetch(`${base}/admin/culex`, { redirect: 'manual' })).headers.get('location'), '/admin/culex/')
        assert.equal((await json<DashboardStats>(`${base}/admin/culex/api/v1/stats`)).status, 200)
      } finally {
        await app.close()
      }
    })
  })

  test('with authorizeAdmin, requests under the prefix need HTTP Basic credentials it accepts (401 otherwise); the app’s routes do not', async () => {
    await withBroker({}, async (b) => {
      const authorizeAdmin = ({ username, password }: { username: string; password: string }): boolean => username === 'admin' && password === 's3cret'
      await withApp(b, { authorizeAdmin }, async (base) => {
        const basic = (user: string, password: string): string => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')
        for (const path of ['/culex/', '/culex/api/v1/stats', '/culex/app.js', '/culex/nothing']) {
          const res = await fetch(base + path)
          assert.equal(res.status, 401, path)
          assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="Culex dashboard"/)
        }
        assert.equal((await fetch(`${base}/culex/api/v1/stats`, { headers: { Authorization: basic('admin', 'wrong') } })).status, 401)
        assert.equal((await fetch(`${base}/culex/api/v1/clients/x/kick`, { ...KICK, headers: { ...KICK.headers, Authorization: basic('admin', 'wrong') } })).status, 401)
        const ok = await json<DashboardStats>(`${base}/culex/api/v1/stats`, { headers: { Authorization: basic('admin', 's3cret') } })
        assert.equal(ok.status, 200)
        assert.equal((await fetch(`${base}/culex/nothing`, { headers: { Authorization: basic('admin', 's3cret') } })).status, 404)
        assert.deepEqual(await json(`${base}/hello`), { status: 200, body: { hello: 'world' } })
      })
    })
  })
})

test("import 'culex-mqtt/fastify' does not load Fastify", () => {
  const script = `
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/fastify/'))
    const { culexDashboard } = await import('./src/fastify.ts')
    const before = [typeof culexDashboard, loaded()]
    await import('fastify')
    console.log(JSON.stringify([...before, loaded()]))
  `
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '../..'), encoding: 'utf8' })
  assert.deepEqual(JSON.parse(out.trim()), ['function', false, true], 'the check sees Fastify once it is loaded')
})
