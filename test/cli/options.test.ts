// culex as a process: the limit flags reach the broker, command-line mistakes exit 2, signals stop it cleanly.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { LIMIT_FLAGS } from '../../src/cli/limits.js'
import { Inbox, once } from '../helpers/index.js'
import { CLI_WAIT_MS, runCli, startCli, within } from './run.js'

/** A command-line mistake: exit 2, one error line naming it, a pointer to --help, nothing on stdout. */
function assertUsageError(args: string[], message: RegExp): void {
  const r = runCli(args)
  assert.equal(r.status, 2, r.stderr)
  assert.equal(r.stdout, '')
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.length, 2, r.stderr)
  assert.match(lines[0] as string, message)
  assert.equal(lines[1], "Run 'culex --help' for the options.")
}

test('culex --help lists every limit flag with its default', () => {
  const r = runCli(['--help'])
  assert.equal(r.status, 0, r.stderr)
  for (const flag of LIMIT_FLAGS) assert.match(r.stdout, new RegExp(`^ {2}--${flag.name} <n> .*\\(default ${flag.default}\\b`, 'm'))
  assert.match(r.stdout, /--persistence <store>/)
  assert.match(r.stdout, /sqlite:PATH/)
  assert.match(r.stdout, /redis:\/\/HOST\[:PORT\]\[\/DB\]/)
})

test('a bad --persistence value exits 2 naming the accepted forms', () => {
  assertUsageError(['--persistence', 'postgres://db'], /^culex: invalid --persistence "postgres:\/\/db": expected memory, sqlite:PATH, redis:\/\/HOST\[:PORT\]\[\/DB\] or rediss:\/\/HOST\[:PORT\]\[\/DB\]$/)
})

test('a limit value that is not an integer exits 2 naming the flag', () => {
  assertUsageError(['--max-queued', 'lots'], /^culex: --max-queued expects a non-negative integer, got "lots"$/)
})

test("a limit out of the broker's range exits 2 naming the flag and the range", () => {
  assertUsageError(['--max-inflight', '0'], /^culex: --max-inflight must be an integer from 1 to 65535, got 0$/)
})

test('--durability without sqlite exits 2', () => {
  assertUsageError(['--durability', 'power'], /^culex: --durability applies to --persistence sqlite:PATH only$/)
})

test('--max-queued 5 keeps 5 of 10 QoS 1 messages for an offline persistent 3.1.1 subscriber', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--max-queued', '5'])
  t.after(() => run.kill())
  const port = await run.port()
  const clients: mqtt.MqttClient[] = []
  t.after(() => clients.forEach((c) => c.end(true)))
  const connect = (options: mqtt.IClientOptions): mqtt.MqttClient => {
    const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, ...options })
    clients.push(client)
    return client
  }
  const subscriberOptions = { clientId: 'cli-max-queued', clean: false }

  const first = connect(subscriberOptions)
  await once(first, 'connect')
  await within(first.subscribeAsync('cli/queued', { qos: 1 }), 'SUBACK', run)
  await within(first.endAsync(), 'the subscriber to disconnect', run)

  const publisher = connect({ clientId: 'cli-max-queued-pub' })
  await once(publisher, 'connect')
  for (let i = 0; i < 10; i++) await within(publisher.publishAsync('cli/queued', String(i), { qos: 1 }), `PUBACK ${i}`, run)

  const again = connect(subscriberOptions)
  const inbox = new Inbox(again)
  const [connack] = await once<[mqtt.IConnackPacket]>(again, 'connect')
  assert.equal(connack.sessionPresent, true)
  // A marker published now arrives after whatever was queued: once it is in, nothing queued is still to come.
  await within(publisher.publishAsync('cli/queued', 'marker', { qos: 1 }), 'PUBACK of the marker', run)
  await inbox.waitFor('marker', CLI_WAIT_MS)
  const queued = inbox.messages.filter((m) => m.payload !== 'marker').map((m) => m.payload)
  assert.deepEqual(queued, ['0', '1', '2', '3', '4'], 'the first five are kept, the rest dropped')
  run.child.kill('SIGTERM')
  assert.equal(await run.exit(), 0)
})

test('SIGTERM closes the clients, prints the shutdown lines and exits 0', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1'])
  t.after(() => run.kill())
  const port = await run.port()
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 5, reconnectPeriod: 0 })
  t.after(() => client.end(true))
  await once(client, 'connect')
  const disconnect = once<[mqtt.IDisconnectPacket]>(client, 'disconnect')
  run.child.kill('SIGTERM')
  const [packet] = await disconnect
  assert.equal(packet.reasonCode, 0x8b, 'MQTT 5 clients are told: server shutting down')
  assert.equal(await run.exit(), 0)
  // culex's own lines; the broker's log lines (INFO client disconnected ...) come in between.
  const own = run.stdout().split('\n').filter((line) => line.startsWith('culex: '))
  assert.deepEqual(own.slice(-2), ['culex: SIGTERM received, shutting down', 'culex: stopped'])
  assert.equal(run.stderr(), '')
})

test('culex prints the persistence in use before it listens: memory by default', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1'])
  t.after(() => run.kill())
  await run.port()
  assert.match(run.stdout(), /^culex: persistence memory \(not durable\)\nculex: listening on mqtt:\/\/127\.0\.0\.1:\d+ \(tcp; anonymous clients allowed; no TLS\)\n/)
  run.child.kill('SIGINT')
  assert.equal(await run.exit(), 0)
})

test("README's Command line section names every limit flag", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('## Command line'), readme.indexOf('\n## ', readme.indexOf('## Command line') + 1))
  assert.ok(section.startsWith('## Command line'), 'README has a Command line section')
  for (const flag of LIMIT_FLAGS) assert.match(section, new RegExp(`\`--${flag.name}\``), `--${flag.name}`)
})
