// culex --persistence sqlite:PATH | redis://...: the adapter in use is printed, keeps state across
// restarts, and a missing adapter or package is one clear line and exit code 1.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { Inbox, once, skipWithout, Waiters } from '../helpers/index.js'
import { CLI_WAIT_MS, hasAdapter, runCli, startCli, within, type CliRun } from './run.js'

const HIDE = ['--import', './test/cli/hide-packages.ts']

function tempDir(t: { after(f: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function escape(text: string): string {
  return text.replace(/[/\\^$*+?.()|[\]{}]/g, '\\$&')
}

/** Publishes a retained QoS 1 message through `run` and waits for its PUBACK. */
async function publishRetained(run: CliRun, topic: string, payload: string): Promise<void> {
  const client = mqtt.connect({ host: '127.0.0.1', port: await run.port(), protocolVersion: 4, reconnectPeriod: 0 })
  try {
    await once(client, 'connect')
    await within(client.publishAsync(topic, payload, { qos: 1, retain: true }), `PUBACK of ${topic}`, run)
    await within(client.endAsync(), 'the publisher to disconnect', run)
  } finally {
    client.end(true)
  }
}

/** Subscribes through `run` and returns the retained message of `topic`. */
async function readRetained(run: CliRun, topic: string): Promise<string> {
  const client = mqtt.connect({ host: '127.0.0.1', port: await run.port(), protocolVersion: 4, reconnectPeriod: 0 })
  try {
    const inbox = new Inbox(client)
    await once(client, 'connect')
    await within(client.subscribeAsync(topic, { qos: 1 }), `SUBACK of ${topic}`, run)
    return (await inbox.waitForTopic(topic, CLI_WAIT_MS)).payload
  } finally {
    client.end(true)
  }
}

const noSqlite = hasAdapter('sqlite') ? false : 'src/persistence/sqlite.ts does not exist yet'
const noRedis = hasAdapter('redis') ? false : 'src/persistence/redis.ts does not exist yet'

test('--persistence sqlite:PATH prints the absolute path, and a retained message survives a SIGTERM and restart', { skip: noSqlite }, async (t) => {
  const file = path.join(tempDir(t), 'culex.db')
  const args = ['--port', '0', '--host', '127.0.0.1', '--persistence', `sqlite:${file}`]
  const first = startCli(args)
  t.after(() => first.kill())
  await first.waitFor(new RegExp(`^culex: persistence sqlite:${escape(file)} \\(durable\\)$`, 'm'))
  await publishRetained(first, 'cli/sqlite', 'kept')
  first.child.kill('SIGTERM')
  assert.equal(await first.exit(), 0, first.output())
  assert.match(first.stdout(), /culex: stopped\n$/)

  const second = startCli([...args, '--durability', 'power'])
  t.after(() => second.kill())
  await second.waitFor(new RegExp(`^culex: persistence sqlite:${escape(file)} \\(durable, durability power\\)$`, 'm'))
  assert.equal(await readRetained(second, 'cli/sqlite'), 'kept')
  second.child.kill('SIGTERM')
  assert.equal(await second.exit(), 0, second.output())
})

test('--persistence sqlite:PATH without better-sqlite3 installed: one line saying so, exit 1', (t) => {
  const file = path.join(tempDir(t), 'culex.db')
  const r = runCli(['--port', '0', '--persistence', `sqlite:${file}`], HIDE, { ...process.env, CULEX_TEST_HIDE: 'better-sqlite3' })
  assert.equal(r.status, 1, r.stderr)
  assert.equal(r.stdout, '')
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
  if (hasAdapter('sqlite')) {
    assert.equal(r.stderr, 'culex: --persistence sqlite needs the better-sqlite3 package, which is not installed: npm install better-sqlite3\n')
  } else {
    assert.match(r.stderr, /^culex: this culex has no SQLite adapter \(Cannot find module .*persistence[/\\]sqlite\.(js|ts)/)
  }
})

test('--persistence redis://... without ioredis installed: one line saying so, exit 1', () => {
  const r = runCli(['--port', '0', '--persistence', 'redis://127.0.0.1:1/0'], HIDE, { ...process.env, CULEX_TEST_HIDE: 'ioredis' })
  assert.equal(r.status, 1, r.stderr)
  assert.equal(r.stdout, '')
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
  if (hasAdapter('redis')) {
    assert.equal(r.stderr, 'culex: --persistence redis needs the ioredis package, which is not installed: npm install ioredis\n')
  } else {
    assert.match(r.stderr, /^culex: this culex has no Redis adapter \(Cannot find module .*persistence[/\\]redis\.(js|ts)/)
  }
})

/** A port nothing listens on, for a server the test starts next. */
async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

test('--persistence redis://HOST:PORT/DB prints the URL and warns of a Redis that does not fsync; --redis-strict refuses it; a retained message survives a restart', { skip: noRedis || skipWithout('redis-server') || false }, async (t) => {
  const redisPort = await freePort()
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => redis.kill('SIGKILL'))
  let redisOut = ''
  const ready = new Waiters()
  redis.stdout.on('data', (d: Buffer) => {
    redisOut += d.toString()
    ready.notify()
  })
  await ready.until(() => /Ready to accept connections/.test(redisOut), CLI_WAIT_MS, () => `redis-server to start; got:\n${redisOut}`)

  const url = `redis://127.0.0.1:${redisPort}/3`
  const args = ['--port', '0', '--host', '127.0.0.1', '--persistence', url]
  const first = startCli(args)
  t.after(() => first.kill())
  await first.waitFor(new RegExp(`^culex: persistence ${escape(url)} \\(durable\\)$`, 'm'))
  await publishRetained(first, 'cli/redis', 'kept')
  first.child.kill('SIGTERM')
  assert.equal(await first.exit(), 0, first.output())
  // This redis-server does not fsync (appendonly no): the adapter says so, on culex's stderr.
  assert.match(first.stderr(), /^culex: warning: Redis does not fsync every write before answering: appendonly is no/m)

  // --redis-strict: the same server is refused, in one line, exit 1.
  const strict = startCli([...args, '--redis-strict'])
  t.after(() => strict.kill())
  await strict.waitFor(new RegExp(`^culex: persistence ${escape(url)} \\(durable, strict\\)$`, 'm'))
  assert.equal(await strict.exit(), 1, strict.output())
  assert.match(strict.stderr(), new RegExp(`^culex: cannot open persistence ${escape(url)}: RedisPersistence \\(strict\\) refuses to open: `, 'm'))
  assert.doesNotMatch(strict.stdout(), /listening on/)

  const second = startCli(args)
  t.after(() => second.kill())
  assert.equal(await readRetained(second, 'cli/redis'), 'kept')
  second.child.kill('SIGTERM')
  assert.equal(await second.exit(), 0, second.output())
})

test('a second signal while shutdown waits (on a Redis server that never answers) exits at once with code 1', { skip: noRedis }, async (t) => {
  // Accepts connections and never answers: opening the store, hence shutting down, waits forever.
  const sockets = new Set<net.Socket>()
  const silent = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  const url = `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--persistence', url])
  t.after(() => run.kill())
  await run.waitFor(/^culex: persistence redis:/m)
  run.child.kill('SIGTERM')
  await run.waitFor(/^culex: SIGTERM received, shutting down$/m)
  run.child.kill('SIGINT')
  assert.equal(await run.exit(), 1, run.output())
  assert.match(run.stderr(), /^culex: SIGINT received again, exiting without finishing shutdown$/m)
  assert.doesNotMatch(run.output(), /culex: stopped|listening on/)
})
