/**
 * Logging through `debug`: with DEBUG=culex:* a broker tells, like `mosquitto -v`, about new
 * connections, CONNACK codes, SUBSCRIBE and PUBLISH, PINGREQ/PINGRESP and why clients went away.
 * The broker runs in a child process so its stderr is exactly what an operator would see.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { connect, connectAccepted, DISCONNECT, lp, PINGREQ, publish, rawConnect, RawMqtt, readConnack, subscribe, realTimer, Waiters } from '../helpers/index.js'

const fixture = fileURLToPath(new URL('./fixtures/log-broker.ts', import.meta.url))
const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

/** The child broker: its port, and its stderr so far. */
class LoggedBroker {
  stderr = ''
  stdout = ''
  private readonly waiters = new Waiters()
  exited = false

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.setEncoding('utf8')
    child.stdout.setEncoding('utf8')
    child.stderr.on('data', (s: string) => {
      this.stderr += s
      this.waiters.notify()
    })
    child.stdout.on('data', (s: string) => {
      this.stdout += s
      this.waiters.notify()
    })
    child.on('exit', () => {
      this.exited = true
      this.waiters.notify()
    })
  }

  static start(debug: string): LoggedBroker {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      cwd: repoRoot,
      env: { ...process.env, DEBUG: debug, DEBUG_COLORS: '0' },
      stdio: 'pipe',
    })
    return new LoggedBroker(child)
  }

  /** Waits until `predicate` holds; fails after `ms`, or at once if the broker has exited. */
  until(predicate: () => boolean, what: string, ms = 10_000): Promise<void> {
    return this.waiters.until(
      predicate,
      ms,
      () => `${what} (the broker ${this.exited ? 'has exited' : 'is running'})\n--- stderr ---\n${this.stderr}`,
      () => this.exited,
    )
  }

  async port(): Promise<number> {
    await this.until(() => this.stdout.includes('\n'), 'the broker to listen')
    return (JSON.parse(this.stdout.split('\n')[0] as string) as { port: number }).port
  }

  get lines(): string[] {
    return this.stderr.split('\n').filter((l) => l.length > 0)
  }

  /** Waits for a stderr line matching every pattern; returns it. */
  async line(what: string, ...patterns: Array<string | RegExp>): Promise<string> {
    const matches = (l: string): boolean => patterns.every((p) => (typeof p === 'string' ? l.includes(p) : p.test(l)))
    await this.until(() => this.lines.some(matches), `a log line with ${what}`)
    return this.lines.find(matches) as string
  }

  async stop(): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin.end()
    const t = realTimer(5000, () => this.child.kill())
    await exited
    t.cancel()
  }
}

test('DEBUG=culex:* logs connections, CONNACK codes, SUBSCRIBE, PUBLISH, PINGREQ/PINGRESP and disconnect reasons', async () => {
  // Logging: DEBUG=culex:* shows new connections (address, client id, keep alive, clean
  // flag, will or not), CONNACK codes, SUBSCRIBE/PUBLISH summaries, PINGREQ/PINGRESP and
  // disconnect reasons, like `mosquitto -v`
  const b = LoggedBroker.start('culex:*')
  const raws: RawMqtt[] = []
  try {
    const port = await b.port()
    const open = async (): Promise<RawMqtt> => {
      const r = await RawMqtt.tcp(port)
      raws.push(r)
      return r
    }

    // A 3.1.1 client with a will: connect, subscribe, publish (to itself), ping, disconnect.
    const client = await open()
    const peer = `127.0.0.1:${client.socket.localPort}`
    await connectAccepted(
      client,
      connect({ clientId: 'log-client', keepAlive: 30, cleanSession: true, will: { topic: 'log/will', payload: Buffer.from('x'), qos: 0, retain: false } }),
    )
    client.write(subscribe(1, 'log/topic', 1))
    await client.waitBytes(4 + 5)
    client.write(publish('log/topic', 'hello'))
    const withPublish = 4 + 5 + 2 + 2 + 'log/topic'.length + 5
    await client.waitBytes(withPublish)
    client.write(PINGREQ)
    await client.waitBytes(withPublish + 2)
    client.write(DISCONNECT)
    await client.waitClosed()

    // A persistent client without a will that drops its socket.
    const dropper = await open()
    const dropperPeer = `127.0.0.1:${dropper.socket.localPort}`
    await connectAccepted(dropper, connect({ clientId: 'log-dropper', keepAlive: 0, cleanSession: false }))
    dropper.socket.destroy()

    // A client that goes silent past its keep alive.
    const silent = await open()
    await connectAccepted(silent, connect({ clientId: 'log-silent', keepAlive: 1 }))

    // A client refused with return code 1 (unsupported protocol level).
    const refused = await open()
    const refusedPeer = `127.0.0.1:${refused.socket.localPort}`
    refused.write(rawConnect({ name: 'MQTT', level: 6, payload: [lp('log-refused')] }))
    assert.equal((await readConnack(refused)).returnCode, 1)

    // New connection: address (with port), then client id, keep alive, clean flag and the will.
    await b.line('the new connection and its address', /new connection/i, peer)
    const connected = await b.line('the connected client', 'log-client', peer, /\bk30\b|keep.?alive\D{0,3}30\b/i)
    assert.match(connected, /\bc1\b|clean\D{0,3}(1|true)\b/i, 'clean flag 1 shown')
    assert.match(connected, /will/i, 'the will is mentioned')
    assert.ok(connected.includes('log/will'), 'the will topic is shown')
    const connectedDropper = await b.line('the connected persistent client', 'log-dropper', dropperPeer, /\bk0\b|keep.?alive\D{0,3}0\b/i)
    assert.match(connectedDropper, /\bc0\b|clean\D{0,3}(0|false)\b/i, 'clean flag 0 shown')
    assert.doesNotMatch(connectedDropper, /will/i, 'no will mentioned for a client without one')

    // CONNACK codes, accepted and refused.
    await b.line('the CONNACK sent to log-client', 'CONNACK', 'log-client', /\b0\b/)
    await b.line('the refusing CONNACK (code 1)', 'CONNACK', refusedPeer, /CONNACK\D*\b1\b|\b1\b\D*$/)

    // SUBSCRIBE and PUBLISH summaries.
    await b.line('the SUBSCRIBE', 'SUBSCRIBE', 'log-client', 'log/topic', /QoS\s*1|q1\b/i)
    await b.line('the SUBACK', 'SUBACK', 'log-client')
    await b.line('the received PUBLISH', /Received PUBLISH/i, 'log-client', 'log/topic', /\b5 bytes\b/)
    await b.line('the sent PUBLISH', /Sending PUBLISH/i, 'log-client', 'log/topic')

    // PINGREQ / PINGRESP.
    await b.line('the PINGREQ', 'PINGREQ', 'log-client')
    await b.line('the PINGRESP', 'PINGRESP', 'log-client')

    // Disconnect reasons: DISCONNECT, socket closed, keep-alive timeout.
    await b.line('the DISCONNECT reason', 'log-client', /disconnected/i, /\bdisconnect\b/)
    await b.line('the socket-closed reason', 'log-dropper', /disconnected/i, /socket.?closed/i)
    await b.line('the keep-alive reason', 'log-silent', /disconnected/i, /keep.?alive/i)

    // Every line carries its culex: namespace; no error was logged.
    const culexLines = b.lines.filter((l) => l.includes('log-client'))
    assert.ok(culexLines.every((l) => /culex:[a-z]+/.test(l)), 'lines are in culex:* namespaces')
    assert.equal(b.lines.filter((l) => l.includes('culex:error')).length, 0, `no culex:error lines:\n${b.stderr}`)
  } finally {
    for (const r of raws) r.socket.destroy()
    await b.stop()
  }
})

test('without DEBUG the broker logs nothing', async () => {
  // logging goes through `debug`, so it is off unless DEBUG enables it
  const b = LoggedBroker.start('')
  let client: RawMqtt | undefined
  try {
    client = await RawMqtt.tcp(await b.port())
    await connectAccepted(client, connect({ clientId: 'quiet', keepAlive: 30 }))
    client.write(PINGREQ)
    await client.waitBytes(6)
    client.write(DISCONNECT)
    await client.waitClosed()
  } finally {
    client?.socket.destroy()
    await b.stop()
  }
  assert.equal(b.stderr, '')
})
