import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { once } from '../helpers/index.js'
import { runCli, startCli, within } from './run.js'

async function canConnect(host: string, port: number): Promise<void> {
  const client = mqtt.connect({ host, port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000 })
  await once(client, 'connect')
  await within(client.endAsync(), 'the client to disconnect')
}

test('culex --help prints usage and exits 0', () => {
  const r = runCli(['--help'])
  assert.equal(r.status, 0)
  assert.match(r.stdout, /Usage: culex/)
  assert.match(r.stdout, /--port/)
  assert.match(r.stdout, /--host/)
})

test('culex rejects a bad port with exit code 2, the error and a pointer to --help', () => {
  const r = runCli(['--port', 'nope'])
  assert.equal(r.status, 2)
  assert.match(r.stderr, /^culex: invalid port "nope"\nRun 'culex --help' for the options\.\n$/)
  assert.equal(r.stdout, '')
})

test('culex listens on IPv4 and IPv6 by default, prints its address and stops on SIGINT', async (t) => {
  const run = startCli(['--port', '0'])
  t.after(() => run.kill())
  const port = await run.port()
  await canConnect('127.0.0.1', port)
  if (net.isIPv6('::1')) {
    // Dual-stack: the same listener takes IPv6 where the host has it.
    const v6 = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '::1', port }, () => {
        s.destroy()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (v6) await canConnect('::1', port)
  }
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0 })
  await once(client, 'connect')
  const closed = once(client, 'close')
  run.child.kill('SIGINT')
  await closed
  assert.equal(await run.exit(), 0)
  assert.match(run.output(), /SIGINT received, shutting down/)
})

test('culex --host binds the given address only', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1'])
  t.after(() => run.kill())
  const port = Number((await run.waitFor(/listening on mqtt:\/\/127\.0\.0\.1:(\d+)/))[1])
  await canConnect('127.0.0.1', port)
  run.child.kill('SIGTERM')
  assert.equal(await run.exit(), 0)
})
