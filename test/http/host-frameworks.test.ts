/**
 * `operationsHandler` mounted in the two host frameworks people use: Express 5 under a mount
 * path (Express strips it into `req.url`, and unserved paths fall through `next()` to the host's
 * own routes), and Fastify (hand over `req.raw`/`reply.raw` after `reply.hijack()`, per route or
 * under a prefix with a wildcard route and the handler's `prefix` option).
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import { operationsHandler } from '../../src/http/handler.js'
import { withBroker } from '../helpers/index.js'

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url, init)
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() }
}

describe('Express 5', () => {
  test('app.use("/ops", handler): /ops/metrics, /ops/healthz, /ops/readyz served; other paths reach the app’s next route', async () => {
    await withBroker({}, async (b) => {
      await b.connect({ clientId: 'express-client' })
      const app = express()
      app.use('/ops', operationsHandler(b.broker))
      app.get('/ops/status', (_req, res) => {
        res.send('the app’s own /ops/status')
      })
      app.use((_req, res) => {
        res.status(404).send('express 404')
      })
      const server: Server = await new Promise((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s))
      })
      try {
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        const metrics = await get(`${base}/ops/metrics`)
        assert.equal(metrics.status, 200)
        assert.equal(metrics.type, 'text/plain; version=0.0.4; charset=utf-8')
        assert.match(metrics.body, /^culex_clients_connected 1$/m)
        assert.match(metrics.body, /^# TYPE culex_connects_total counter$/m)
        const ready = await get(`${base}/ops/readyz`)
        assert.equal(ready.status, 200)
        assert.equal((JSON.parse(ready.body) as { status: string }).status, 'ready')
        assert.equal((await get(`${base}/ops/healthz`)).status, 200)
        assert.equal((await get(`${base}/ops/healthz`, { method: 'HEAD' })).body, '')
        assert.equal((await get(`${base}/ops/metrics`, { method: 'POST' })).status, 405)
        assert.deepEqual(await get(`${base}/ops/status`), { status: 200, type: 'text/html; charset=utf-8', body: 'the app’s own /ops/status' })
        assert.equal((await get(`${base}/ops/unknown`)).body, 'express 404')
        assert.equal((await get(`${base}/metrics`)).body, 'express 404', 'not served outside the mount path')
      } finally {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      }
    })
  })
})

describe('Fastify', () => {
  test('per route: fastify.get(path, (req, reply) => { reply.hijack(); handler(req.raw, reply.raw) }), HEAD included', async () => {
    await withBroker({}, async (b) => {
      const ops = operationsHandler(b.broker)
      const fastify = Fastify()
      for (const path of ['/metrics', '/healthz', '/readyz']) {
        fastify.get(path, (req, reply) => {
          reply.hijack()
          ops(req.raw, reply.raw)
        })
      }
      fastify.get('/app', async () => ({ app: true }))
      try {
        const base = await fastify.listen({ port: 0, host: '127.0.0.1' })
        const metrics = await get(`${base}/metrics`)
        assert.equal(metrics.status, 200)
        assert.equal(metrics.type, 'text/plain; version=0.0.4; charset=utf-8')
        assert.match(metrics.body, /^culex_ready 1$/m)
        const head = await get(`${base}/healthz`, { method: 'HEAD' })
        assert.equal(head.status, 200)
        assert.equal(head.body, '')
        assert.equal((await get(`${base}/readyz`)).status, 200)
        assert.equal((await get(`${base}/app`)).body, '{"app":true}')
        assert.equal((await get(`${base}/nothing`)).status, 404)
      } finally {
        await fastify.close()
      }
    })
  })

  test('under a prefix: a wildcard route in a prefixed plugin, with the handler’s prefix option (req.raw.url keeps the prefix)', async () => {
    await withBroker({}, async (b) => {
      const fastify = Fastify()
      await fastify.register(
        async (scope) => {
          const ops = operationsHandler(b.broker, { prefix: '/ops' })
          scope.all('/*', (req, reply) => {
            reply.hijack()
            ops(req.raw, reply.raw)
          })
        },
        { prefix: '/ops' },
      )
      try {
        const base = await fastify.listen({ port: 0, host: '127.0.0.1' })
        const metrics = await get(`${base}/ops/metrics`)
        assert.equal(metrics.status, 200)
        assert.match(metrics.body, /^# TYPE culex_messages_received_total counter$/m)
        assert.equal((await get(`${base}/ops/readyz`)).status, 200)
        assert.equal((await get(`${base}/ops/healthz`, { method: 'DELETE' })).status, 405)
        assert.equal((await get(`${base}/ops/other`)).status, 404)
      } finally {
        await fastify.close()
      }
    })
  })
})
