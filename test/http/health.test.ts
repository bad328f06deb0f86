/**
 * `/healthz` and `/readyz` over real HTTP against a real broker: ready only while listening,
 * 503 with the reason before `listen`, once `drain()` began and once `close()` began; HEAD, 405,
 * 404 and `next()`; and an operations server that closes at once despite keep-alive connections.
 */
import assert from 'node:assert/strict'
import { Agent, createServer, request, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect as netConnect, type AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { Broker, tcp, type BrokerHealth, type BrokerStats } from '../../src/index.js'
import { operationsHandler, type OperationsHandlerOptions } from '../../src/http/handler.js'
import { startOperationsServer } from '../../src/http/server.js'
import { startBroker } from '../helpers/index.js'

interface Reply {
  status: number
  headers: Headers
  body: string
}

async function get(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init)
  return { status: res.status, headers: res.headers, body: await res.text() }
}

/** A JSON body, parsed. */
function json(reply: Reply): Record<string, unknown> {
  assert.equal(reply.headers.get('content-type'), 'application/json; charset=utf-8')
  return JSON.parse(reply.body) as Record<string, unknown>
}

/** Runs `body` with an operations server for `broker`, closed whatever happens. */
async function withOps(broker: Broker | { stats(): BrokerStats; health(): BrokerHealth }, body: (base: string) => Promise<void>, options: OperationsHandlerOptions = {}): Promise<void> {
  const ops = await startOperationsServer(broker, { port: 0, host: '127.0.0.1', ...options })
  try {
    await body(`http://127.0.0.1:${ops.address().port}`)
  } finally {
    await ops.close()
  }
}

describe('/healthz and /readyz', () => {
  test('a listening broker: /healthz 200 {"status":"ok"}, /readyz 200 {"status":"ready"}, never cached', async () => {
    const b = await startBroker()
    try {
      await withOps(b.broker, async (base) => {
        const health = await get(`${base}/healthz`)
        assert.equal(health.status, 200)
        assert.equal(health.headers.get('cache-control'), 'no-store')
        const h = json(health)
        assert.equal(h.status, 'ok')
        assert.equal(h.alive, true)
        assert.equal(typeof h.eventLoopDelayMs, 'number')
        const ready = await get(`${base}/readyz`)
        assert.equal(ready.status, 200)
        assert.deepEqual({ ...json(ready), eventLoopDelayMs: 0 }, { status: 'ready', alive: true, ready: true, draining: false, eventLoopDelayMs: 0 })
      })
    } finally {
      await b.close()
    }
  })

  test('before listen: /readyz 503 with reason not_listening while /healthz is 200; after listen, 200', async () => {
    const broker = new Broker()
    try {
      await withOps(broker, async (base) => {
        const early = await get(`${base}/readyz`)
        assert.equal(early.status, 503)
        const body = json(early)
        assert.equal(body.status, 'not_ready')
        assert.equal(body.reason, 'not_listening')
        assert.equal(body.ready, false)
        assert.equal((await get(`${base}/healthz`)).status, 200)
        await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
        assert.equal((await get(`${base}/readyz`)).status, 200)
      })
    } finally {
      await broker.close()
    }
  })

  test('once close() began: /readyz 503 (not_listening), /healthz still 200', async () => {
    const b = await startBroker()
    try {
      await withOps(b.broker, async (base) => {
        assert.equal((await get(`${base}/readyz`)).status, 200)
        const closing = b.broker.close()
        const ready = await get(`${base}/readyz`)
        assert.equal(ready.status, 503)
        assert.equal(json(ready).reason, 'not_listening')
        assert.equal((await get(`${base}/healthz`)).status, 200)
        await closing
        assert.equal((await get(`${base}/readyz`)).status, 503)
      })
    } finally {
      await b.close()
    }
  })

  test('once drain() began: /readyz 503 with reason draining and draining: true', async () => {
    const b = await startBroker()
    try {
      await b.connect({ clientId: 'drained' })
      await withOps(b.broker, async (base) => {
        const draining = b.broker.drain({ timeoutMs: 5_000 })
        try {
          const ready = await get(`${base}/readyz`)
          assert.equal(ready.status, 503)
          const body = json(ready)
          assert.equal(body.reason, 'draining')
          assert.equal(body.draining, true)
          assert.equal((await get(`${base}/healthz`)).status, 200)
        } finally {
          await draining
        }
      })
    } finally {
      await b.close()
    }
  })

  test('a stalled event loop (alive: false) makes /healthz 503 {"status":"unhealthy"}', async () => {
    const b = await startBroker()
    try {
      // The one fake: stalling the loop for real would take seconds. Everything else is the real broker's.
      const stalled = { stats: () => b.broker.stats(), health: (): BrokerHealth => ({ ...b.broker.health(), alive: false, eventLoopDelayMs: 6_000 }) }
      await withOps(stalled, async (base) => {
        const reply = await get(`${base}/healthz`)
        assert.equal(reply.status, 503)
        assert.equal(json(reply).status, 'unhealthy')
        assert.equal(json(reply).reason, 'event_loop_stalled')
      })
    } finally {
      await b.close()
    }
  })
})

describe('methods and paths', () => {
  test('HEAD: the status and headers of GET, no body', async () => {
    const b = await startBroker()
    try {
      await withOps(b.broker, async (base) => {
        for (const path of ['/healthz', '/readyz', '/metrics']) {
          const got = await get(`${base}${path}`)
          const head = await get(`${base}${path}`, { method: 'HEAD' })
          assert.equal(head.status, got.status, path)
          assert.equal(head.body, '', path)
          assert.equal(head.headers.get('content-type'), got.headers.get('content-type'), path)
          assert.ok(Number(head.headers.get('content-length')) > 0, path)
        }
      })
    } finally {
      await b.close()
    }
  })

  test('another method on a served path: 405 with Allow: GET, HEAD; an unknown path: 404', async () => {
    const b = await startBroker()
    try {
      await withOps(b.broker, async (base) => {
        for (const method of ['POST', 'PUT', 'DELETE']) {
          const reply = await get(`${base}/metrics`, { method })
          assert.equal(reply.status, 405, method)
          assert.equal(reply.headers.get('allow'), 'GET, HEAD')
        }
        assert.equal((await get(`${base}/nothing-here`)).status, 404)
        assert.equal((await get(`${base}/metrics/`)).status, 404)
        assert.equal((await get(`${base}/readyz?verbose=1`)).status, 200, 'a query string is ignored')
      })
    } finally {
      await b.close()
    }
  })

  test('health: false turns /healthz and /readyz off; prefix strips a path prefix the host left in the URL', async () => {
    const b = await startBroker()
    try {
      await withOps(b.broker, async (base) => {
        assert.equal((await get(`${base}/healthz`)).status, 404)
        assert.equal((await get(`${base}/metrics`)).status, 200)
      }, { health: false })
      await withOps(b.broker, async (base) => {
        assert.equal((await get(`${base}/ops/readyz`)).status, 200)
        assert.equal((await get(`${base}/ops/metrics`)).status, 200)
        assert.equal((await get(`${base}/readyz`)).status, 200, 'a URL without the prefix is routed as it is')
        assert.equal((await get(`${base}/opsx/readyz`)).status, 404)
      }, { prefix: '/ops/' })
    } finally {
      await b.close()
    }
  })

  test('a path it does not serve goes to next() when given', async () => {
    const b = await startBroker()
    const handler = operationsHandler(b.broker)
    const server: Server = createServer((req, res) =>
      handler(req, res, () => {
        res.statusCode = 418
        res.end('from next')
      }),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const other = await get(`${base}/elsewhere`)
      assert.equal(other.status, 418)
      assert.equal(other.body, 'from next')
      assert.equal((await get(`${base}/healthz`)).status, 200)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await b.close()
    }
  })
})

describe('startOperationsServer', () => {
  test('close() resolves with a keep-alive connection and a half-sent request open', async () => {
    const b = await startBroker()
    const ops = await startOperationsServer(b.broker, { port: 0 })
    const agent = new Agent({ keepAlive: true })
    const port = ops.address().port
    const idle = netConnect(port, '127.0.0.1')
    idle.on('error', () => {})
    const idleConnected = new Promise<void>((resolve) => idle.once('connect', resolve))
    const idleClosed = new Promise((resolve) => idle.once('close', resolve))
    try {
      assert.equal(ops.address().address, '127.0.0.1', 'loopback by default')
      // A keep-alive request whose socket stays open and idle in the agent.
      const headers = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
          res.resume()
          res.on('end', () => resolve(res.headers))
        })
        req.on('error', reject)
        req.end()
      })
      assert.equal(headers.connection, 'keep-alive')
      // And a socket that sent half a request.
      await idleConnected
      idle.write('GET /metrics HTTP/1.1\r\nHost: x\r\n')
      await ops.close()
      await idleClosed
      // And it no longer listens.
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`))
      assert.equal(ops.close(), ops.close(), 'close() again: the same promise')
    } finally {
      agent.destroy()
      idle.destroy()
      await ops.close()
      await b.close()
    }
  })

  test('rejects when the port is taken', async () => {
    const b = await startBroker()
    const first = await startOperationsServer(b.broker, { port: 0 })
    try {
      await assert.rejects(startOperationsServer(b.broker, { port: first.address().port }), { code: 'EADDRINUSE' })
    } finally {
      await first.close()
      await b.close()
    }
  })
})
