import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import net from 'node:net'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import { once, Waiters } from '../helpers/index.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cli = ['--import', 'tsx', 'src/cli/main.ts']

function startCli(args: string[]): { output: () => string; waitFor: (re: RegExp) => Promise<RegExpMatchArray>; child: ReturnType<typeof spawn> } {
  const child = spawn(process.execPath, [...cli, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const output = new Waiters()
  const append = (d: Buffer): void => {
    out += d.toString()
    output.notify()
  }
  child.stdout.on('data', append)
  child.stderr.on('data', append)
  return {
    child,
    output: () => out,
    waitFor: async (re) => {
      await output.until(() => out.match(re) !== null, 15_000, () => `output matching ${re}; got:\n${out}`)
      return out.match(re) as RegExpMatchArray
    },
  }
}

async function canConnect(host: string, port: number): Promise<void> {
  const client = mqtt.connect({ host, port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000 })
  await once(client, 'connect')
  await client.endAsync()
}

test('culex --help prints usage and exits 0', () => {
  const r = spawnSync(process.execPath, [...cli, '--help'], { cwd: root, encoding: 'utf8' })
  assert.equal(r.status, 0)
  assert.match(r.stdout, /Usage: culex/)
  assert.match(r.stdout, /--port/)
  assert.match(r.stdout, /--host/)
})

test('culex rejects a bad port with exit code 2 and the usage', () => {
  const r = spawnSync(process.execPath, [...cli, '--port', 'nope'], { cwd: root, encoding: 'utf8' })
  assert.equal(r.status, 2)
  assert.match(r.stderr, /invalid port/)
})

test('culex listens on IPv4 and IPv6 by default, prints its address and stops on SIGINT', async () => {
  const run = startCli(['--port', '0'])
  const port = Number((await run.waitFor(/listening on mqtt:\/\/\S+:(\d+)/))[1])
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
  const exited = once<[number | null]>(run.child, 'exit', 10000)
  run.child.kill('SIGINT')
  await closed
  const [code] = await exited
  assert.equal(code, 0)
  assert.match(run.output(), /SIGINT received, shutting down/)
})

test('culex --host binds the given address only', async () => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1'])
  const port = Number((await run.waitFor(/listening on mqtt:\/\/127\.0\.0\.1:(\d+)/))[1])
  await canConnect('127.0.0.1', port)
  const exited = once<[number | null]>(run.child, 'exit', 10000)
  run.child.kill('SIGTERM')
  assert.equal((await exited)[0], 0)
})
