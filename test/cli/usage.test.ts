// The command line's options: -h and --help print the usage; --host (no short form) binds an address.
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process'
import net from 'node:net'
import type { Readable } from 'node:stream'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cli = ['--import', 'tsx', 'src/cli/main.ts']

function runSync(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...cli, ...args], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

function assertUsage(stdout: string): void {
  assert.match(stdout, /^Usage: culex \[options\]/)
  assert.match(stdout, /^ {2}-h, --help +show this help$/m)
  assert.match(stdout, /^ {6}--host <host> +address to bind/m, '--host is listed without a short form')
  assert.match(stdout, /^ {2}-p, --port <port>/m)
}

for (const flag of ['-h', '--help']) {
  test(`culex ${flag} prints the usage on stdout and exits 0 without starting a broker`, () => {
    const r = runSync([flag])
    assert.equal(r.status, 0, r.stderr)
    assertUsage(r.stdout)
    assert.doesNotMatch(r.stdout, /listening/)
    assert.equal(r.stderr, '')
  })
}

test('culex -h <address> (the old short form of --host) exits 2 and points to --host', () => {
  const r = runSync(['-h', '127.0.0.1'])
  assert.equal(r.status, 2)
  assert.match(r.stderr, /-h is --help; to bind an address use --host 127\.0\.0\.1/)
  assert.equal(r.stdout, '')
})

/** Resolves with the first match of `pattern` on the child's stdout; rejects if it exits first. */
function waitForLine(child: ChildProcessByStdio<null, Readable, Readable>, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const match = out.match(pattern)
      if (match) {
        child.stdout.off('data', onData)
        child.off('exit', onExit)
        resolve(match)
      }
    }
    const onExit = (code: number | null): void => reject(new Error(`exited with ${code} before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    child.stdout.on('data', onData)
    child.once('exit', onExit)
  })
}

/** Sends an MQTT 3.1.1 CONNECT and resolves with the first bytes the broker answers. */
function connack(host: string, port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    // CONNECT: protocol "MQTT" level 4, clean session, keep alive 10, client id "usage".
    const clientId = Buffer.from('usage')
    const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 10, 0, clientId.length])
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from([0x10, variable.length + clientId.length]), variable, clientId])))
    socket.once('data', (data: Buffer) => {
      socket.destroy()
      resolve(data)
    })
    socket.once('error', reject)
  })
}

test('culex --host 127.0.0.1 --port 0 binds that address and serves MQTT there', async () => {
  const child = spawn(process.execPath, [...cli, '--host', '127.0.0.1', '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  try {
    const match = await waitForLine(child, /listening on mqtt:\/\/(\S+):(\d+)/)
    assert.equal(match[1], '127.0.0.1')
    const reply = await connack('127.0.0.1', Number(match[2]))
    assert.deepEqual([...reply.subarray(0, 4)], [0x20, 2, 0, 0], 'CONNACK, accepted')
  } finally {
    child.kill('SIGTERM')
  }
  assert.equal(await exited, 0)
})
