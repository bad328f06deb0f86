// culex --config, CULEX_* variables and the new flags, as real processes: listeners of every kind
// accept real clients, --test-config and --print-config, precedence, TLS, auth files and SIGHUP,
// the HTTP operations server, JSON logs, SIGTERM.
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import mqtt, { type IClientOptions } from 'mqtt'
import { Inbox, once, skipWithout } from '../helpers/index.js'
import { makePki } from '../transports/certificates.js'
import { CLI_WAIT_MS, runCli, startCli, within, type CliRun } from './run.js'

function tempDir(t: { after(f: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-config-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function write(dir: string, name: string, text: string | Buffer): string {
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

/** The lines culex itself printed (not the broker's log lines). */
function own(text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('culex: '))
}

/** The port of the `listening on SCHEME://...` line, waited for. */
async function portOf(run: CliRun, scheme: string): Promise<number> {
  return Number((await run.waitFor(new RegExp(`listening on ${scheme}://\\S+?:(\\d+)`)))[1])
}

/** Connects, runs `body`, disconnects. */
async function withClient(url: string, options: IClientOptions, run: CliRun, body: (client: mqtt.MqttClient) => Promise<void> = async () => {}): Promise<void> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  client.on('error', () => {})
  try {
    await within(once(client, 'connect'), `a connection to ${url}`, run)
    await body(client)
    await within(client.endAsync(), 'the client to disconnect', run)
  } finally {
    client.end(true)
  }
}

/** SIGTERM, then exit 0 with `culex: stopped` as culex's last line. */
async function stopCleanly(run: CliRun): Promise<void> {
  run.child.kill('SIGTERM')
  assert.equal(await run.exit(), 0, run.output())
  assert.equal(own(run.stdout()).at(-1), 'culex: stopped')
}

test('a YAML config with tcp and ws listeners: both accept real clients, and a message crosses from one to the other', async (t) => {
  const dir = tempDir(t)
  const file = write(
    dir,
    'culex.yaml',
    `listeners:
  - type: tcp
    port: 0
    host: 127.0.0.1
  - type: ws
    port: 0
    host: 127.0.0.1
    path: /mqtt-ws
limits:
  maxQueued: 50
drain: { timeoutMs: 5000, spreadMs: 10 }
`,
  )
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const tcpPort = await portOf(run, 'mqtt')
  const wsPort = await portOf(run, 'ws')
  assert.match(run.stdout(), /^culex: listening on mqtt:\/\/127\.0\.0\.1:\d+ \(tcp; anonymous clients allowed; no TLS\)$/m)
  assert.match(run.stdout(), /^culex: listening on ws:\/\/127\.0\.0\.1:\d+\/mqtt-ws \(ws \/mqtt-ws; anonymous clients allowed; no TLS\)$/m)

  await withClient(`mqtt://127.0.0.1:${tcpPort}`, { protocolVersion: 4 }, run, async (subscriber) => {
    const inbox = new Inbox(subscriber)
    await within(subscriber.subscribeAsync('cfg/cross', { qos: 1 }), 'SUBACK', run)
    await withClient(`ws://127.0.0.1:${wsPort}/mqtt-ws`, { protocolVersion: 5 }, run, async (publisher) => {
      await within(publisher.publishAsync('cfg/cross', 'over ws', { qos: 1 }), 'PUBACK', run)
    })
    assert.equal((await inbox.waitForTopic('cfg/cross', CLI_WAIT_MS)).payload, 'over ws')
  })
  await stopCleanly(run)
})

test('SIGTERM drains: an MQTT 5 client is told the server is shutting down, then culex prints stopped and exits 0', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'culex.yaml', 'listeners: [{ type: tcp, port: 0, host: 127.0.0.1 }]\ndrain: { timeoutMs: 3000, spreadMs: 0 }\n')
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const client = mqtt.connect({ host: '127.0.0.1', port: await run.port(), protocolVersion: 5, reconnectPeriod: 0 })
  t.after(() => client.end(true))
  await once(client, 'connect')
  const disconnect = once<[mqtt.IDisconnectPacket]>(client, 'disconnect')
  run.child.kill('SIGTERM')
  const [packet] = await within(disconnect, 'DISCONNECT', run)
  assert.equal(packet.reasonCode, 0x8b)
  assert.equal(await run.exit(), 0)
  assert.deepEqual(own(run.stdout()).slice(-2), ['culex: SIGTERM received, shutting down', 'culex: stopped'])
  assert.equal(run.stderr(), '')
})

test('--test-config: every mistake as file:line:col path: message, exit 2; a good file prints OK, exit 0, starts nothing', (t) => {
  const dir = tempDir(t)
  const bad = write(
    dir,
    'bad.yaml',
    `listeners:
  - type: tcp
    port: 1883
  - type: ws
    port: 70000
limits:
  maxQueue: 5
`,
  )
  const r = runCli(['--config', bad, '--test-config'])
  assert.equal(r.status, 2, r.stderr)
  assert.equal(r.stdout, '')
  assert.deepEqual(r.stderr.trimEnd().split('\n'), [
    `culex: ${bad}:5:5 listeners[1].port: expected an integer from 0 to 65535, got 70000`,
    `culex: ${bad}:7:3 limits.maxQueue: unknown key (did you mean maxQueued?)`,
  ])

  const good = write(dir, 'good.yaml', 'listeners: [{ type: tcp, port: 1883 }]\nlimits: { maxQueued: 5 }\n')
  const ok = runCli(['--config', good, '--test-config'])
  assert.equal(ok.status, 0, ok.stderr)
  assert.equal(ok.stdout, 'culex: configuration OK\n')
  assert.equal(ok.stderr, '')

  // The files it names are read too.
  const missing = write(dir, 'tls.yaml', `listeners: [{ type: tls, port: 8883, tls: { cert: missing.crt, key: missing.key } }]\nauth: { passwordFile: nowhere.passwd }\n`)
  const files = runCli(['--config', missing, '--test-config'])
  assert.equal(files.status, 2, files.stderr)
  assert.deepEqual(files.stderr.trimEnd().split('\n'), [
    `culex: listeners[0].tls.cert: cannot read ${path.join(dir, 'missing.crt')}: no such file`,
    `culex: auth: ${path.join(dir, 'nowhere.passwd')}: cannot read: ENOENT: no such file or directory, open '${path.join(dir, 'nowhere.passwd')}'`,
  ])
})

test('--print-config prints the configuration in effect as YAML, secrets redacted, and exits 0', (t) => {
  const dir = tempDir(t)
  const file = write(
    dir,
    'culex.yaml',
    `listeners:
  - { type: tls, port: 8883, tls: { cert: server.crt, key: server.key, passphrase: hunter2 } }
persistence: { type: redis, url: "redis://:s3cret@localhost:6379/0" }
`,
  )
  const r = runCli(['--config', file, '--print-config'])
  assert.equal(r.status, 0, r.stderr)
  assert.doesNotMatch(r.stdout, /hunter2|s3cret/)
  assert.match(r.stdout, /passphrase: <redacted>/)
  assert.match(r.stdout, /url: redis:\/\/:\*\*\*@localhost:6379\/0/)
  assert.match(r.stdout, new RegExp(`cert: ${path.join(dir, 'server.crt').replace(/[/\\.]/g, '\\$&')}`))
  assert.match(r.stdout, /maxQueued: 1000/, 'the defaults are shown')
})

test('precedence in a real run: the environment overrides the file, flags override the environment', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'culex.yaml', 'listeners: [{ type: tcp, port: 0, host: 127.0.0.2 }]\nlimits: { maxQueued: 1, maxInflight: 1, maxConnections: 1 }\n')
  const env = { ...process.env, CULEX_HOST: '127.0.0.1', CULEX_LIMITS__MAX_INFLIGHT: '2', CULEX_LIMITS__MAX_CONNECTIONS: '2' }
  const printed = runCli(['--config', file, '--max-connections', '3', '--print-config'], [], env)
  assert.equal(printed.status, 0, printed.stderr)
  assert.match(printed.stdout, /maxQueued: 1\n/)
  assert.match(printed.stdout, /maxInflight: 2\n/)
  assert.match(printed.stdout, /maxConnections: 3\n/)

  const fromEnv = startCli(['--config', file], [], env)
  t.after(() => fromEnv.kill())
  await fromEnv.waitFor(/listening on mqtt:\/\/127\.0\.0\.1:\d+/)
  await withClient(`mqtt://127.0.0.1:${await fromEnv.port()}`, { protocolVersion: 4 }, fromEnv)
  await stopCleanly(fromEnv)

  const fromFlag = startCli(['--config', file, '--host', 'localhost'], [], { ...env, CULEX_HOST: '127.0.0.9' })
  t.after(() => fromFlag.kill())
  await fromFlag.waitFor(/listening on mqtt:\/\/(127\.0\.0\.1|\[::1\]):\d+/)
  await stopCleanly(fromFlag)
})

test('a JSON config works', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'culex.json', JSON.stringify({ listeners: [{ type: 'tcp', port: 0, host: '127.0.0.1' }], capabilities: { maximumQoS: 1 } }, null, 2))
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  await withClient(`mqtt://127.0.0.1:${await run.port()}`, { protocolVersion: 5 }, run, async (client) => {
    const [granted] = await within(client.subscribeAsync('cfg/json', { qos: 2 }), 'SUBACK', run)
    assert.equal(granted?.qos, 1, 'capabilities.maximumQoS from the file')
  })
  await stopCleanly(run)
})

test('tls and wss listeners from certificate files accept mqtts and wss clients; the banner says TLS and client certificates', { skip: skipWithout('openssl') }, async (t) => {
  const dir = tempDir(t)
  const pki = makePki()
  write(dir, 'ca.crt', pki.ca)
  write(dir, 'server.crt', pki.serverCert)
  write(dir, 'server.key', pki.serverKey)
  // File names relative to the configuration file.
  const file = write(
    dir,
    'culex.yaml',
    `listeners:
  - type: tls
    port: 0
    host: 127.0.0.1
    tls: { cert: server.crt, key: server.key, ca: ca.crt, requestCert: true }
  - type: wss
    port: 0
    host: 127.0.0.1
    tls: { cert: server.crt, key: server.key }
`,
  )
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const tlsPort = await portOf(run, 'mqtts')
  const wssPort = await portOf(run, 'wss')
  assert.match(run.stdout(), /^culex: listening on mqtts:\/\/127\.0\.0\.1:\d+ \(tls; anonymous clients allowed; TLS, client certificates required\)$/m)
  assert.match(run.stdout(), /^culex: listening on wss:\/\/127\.0\.0\.1:\d+\/mqtt \(wss \/mqtt; anonymous clients allowed; TLS\)$/m)
  await withClient(`mqtts://127.0.0.1:${tlsPort}`, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey, protocolVersion: 4 }, run)
  await withClient(`wss://127.0.0.1:${wssPort}/mqtt`, { ca: pki.ca, protocolVersion: 5 }, run)
  // Without a client certificate the handshake is refused.
  const refused = mqtt.connect(`mqtts://127.0.0.1:${tlsPort}`, { ca: pki.ca, reconnectPeriod: 0, connectTimeout: 5000 })
  t.after(() => refused.end(true))
  await within(once(refused, 'error').catch(() => {}), 'the refusal', run)
  await stopCleanly(run)
})

/** A Mosquitto `$7$` (PBKDF2-SHA512) password line. */
function passwordLine(user: string, password: string): string {
  const salt = randomBytes(12)
  const hash = pbkdf2Sync(password, salt, 101, 64, 'sha512')
  return `${user}:$7$101$${salt.toString('base64')}$${hash.toString('base64')}\n`
}

/** The CONNACK code a 3.1.1 client gets. */
async function connackCode(port: number, options: IClientOptions, run: CliRun): Promise<number> {
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options })
  client.on('error', () => {})
  try {
    return await within(
      new Promise<number>((resolve) => {
        client.on('packetreceive', (packet) => {
          if (packet.cmd === 'connack') resolve(packet.returnCode ?? 0)
        })
      }),
      'CONNACK',
      run,
    )
  } finally {
    client.end(true)
  }
}

test('auth: a password file refuses anonymous clients, the banner says so, SIGHUP reloads the files', async (t) => {
  const dir = tempDir(t)
  const passwd = write(dir, 'passwd', passwordLine('alice', 'wonderland'))
  write(dir, 'acl', 'user alice\ntopic readwrite #\n')
  const file = write(dir, 'culex.yaml', 'listeners: [{ type: tcp, port: 0, host: 127.0.0.1 }]\nauth: { passwordFile: passwd, aclFile: acl }\n')
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const port = await run.port()
  assert.match(run.stdout(), /^culex: listening on mqtt:\/\/127\.0\.0\.1:\d+ \(tcp; password file, ACL file, anonymous refused; no TLS\)$/m)
  assert.equal(await connackCode(port, {}, run), 5, 'anonymous: not authorized')
  assert.equal(await connackCode(port, { username: 'alice', password: 'wrong' }, run), 5)
  assert.equal(await connackCode(port, { username: 'alice', password: 'wonderland' }, run), 0)

  // A new user, then SIGHUP.
  writeFileSync(passwd, passwordLine('alice', 'wonderland') + passwordLine('bob', 'builder'))
  run.child.kill('SIGHUP')
  await run.waitFor(/^culex: reloaded auth files$/m)
  assert.equal(await connackCode(port, { username: 'bob', password: 'builder' }, run), 0)

  // A broken file keeps the rules in force and says why.
  writeFileSync(passwd, 'not a password line\n')
  run.child.kill('SIGHUP')
  await run.waitFor(/^culex: cannot reload auth files, keeping the rules in force: .*passwd:1/m)
  assert.equal(await connackCode(port, { username: 'bob', password: 'builder' }, run), 0)
  await stopCleanly(run)
})

test('--password-file and --allow-anonymous as flags', async (t) => {
  const dir = tempDir(t)
  const passwd = write(dir, 'passwd', passwordLine('alice', 'wonderland'))
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--password-file', passwd, '--allow-anonymous'])
  t.after(() => run.kill())
  const port = await run.port()
  assert.match(run.stdout(), /\(tcp; password file, anonymous allowed; no TLS\)/)
  assert.equal(await connackCode(port, {}, run), 0)
  assert.equal(await connackCode(port, { username: 'alice', password: 'nope' }, run), 5)
  await stopCleanly(run)
})

test('--http-port serves the dashboard at /, /healthz, /readyz and /metrics; the banner says where', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--http-port', '0'])
  t.after(() => run.kill())
  const [, base] = await run.waitFor(/^culex: dashboard, metrics and health on (http:\/\/127\.0\.0\.1:\d+) \(\/, \/metrics, \/healthz, \/readyz; dashboard without credentials\)$/m)
  await run.port()
  for (const endpoint of ['/healthz', '/readyz', '/metrics', '/', '/api/v1/stats']) {
    const response = await within(fetch(`${base}${endpoint}`), endpoint, run)
    assert.equal(response.status, 200, endpoint)
    await response.text()
  }
  const missing = await within(fetch(`${base}/no-such-page`), '/no-such-page', run)
  assert.equal(missing.status, 404)
  await missing.text()
  // DNS rebinding: a page on another host name reaching the loopback port gets nothing.
  const statusFor = (host: string, path: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const request = httpRequest(`${base}${path}`, { headers: { Host: host } }, (response) => {
        response.resume()
        resolve(response.statusCode ?? 0)
      })
      request.on('error', reject)
      request.end()
    })
  assert.equal(await within(statusFor('evil.example:80', '/api/v1/clients'), 'rebinding', run), 403)
  assert.equal(await within(statusFor('evil.example', '/metrics'), 'metrics', run), 200, 'metrics and health are not the dashboard')
  assert.equal(await within(statusFor('localhost:1234', '/api/v1/stats'), 'localhost', run), 200)
  await stopCleanly(run)
})

test('--log-format json: culex and the broker write one JSON object per line', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--log-format', 'json'])
  t.after(() => run.kill())
  const port = await run.port()
  await withClient(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clientId: 'json-logs' }, run)
  run.child.kill('SIGTERM')
  assert.equal(await run.exit(), 0, run.output())
  const lines = run.stdout().trimEnd().split('\n')
  const records = lines.map((line) => JSON.parse(line) as { time: string; level: string; msg: string })
  for (const record of records) {
    assert.equal(typeof record.time, 'string')
    assert.match(record.level, /^(info|warn|error|debug)$/)
  }
  assert.ok(records.some((r) => /^listening on mqtt:\/\/127\.0\.0\.1:\d+ \(tcp;/.test(r.msg)))
  assert.equal(records.at(-1)?.msg, 'stopped')
})

test('an unknown CULEX_ variable exits 2, naming it and the closest one', () => {
  const r = runCli(['--port', '0'], [], { ...process.env, CULEX_LIMITS__MAX_QUEUE: '5' })
  assert.equal(r.status, 2)
  assert.equal(r.stdout, '')
  assert.equal(r.stderr, 'culex: $CULEX_LIMITS__MAX_QUEUE: unknown variable (did you mean CULEX_LIMITS__MAX_QUEUED?)\n')
})

test('a bad value of a new flag exits 2 naming the flag, with the pointer to --help', () => {
  const r = runCli(['--sys-interval', 'often'])
  assert.equal(r.status, 2)
  assert.equal(r.stderr, 'culex: --sys-interval sys.interval: expected an integer from 0 to 2147483, got "often"\nRun \'culex --help\' for the options.\n')
})

test('a listener that cannot bind exits 1 naming it, after closing what opened', async (t) => {
  const taken = net.createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.after(() => taken.close())
  const port = (taken.address() as net.AddressInfo).port
  const dir = tempDir(t)
  const file = write(dir, 'culex.yaml', `listeners:\n  - { type: tcp, port: 0, host: 127.0.0.1 }\n  - { type: ws, port: ${port}, host: 127.0.0.1 }\n`)
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  assert.equal(await run.exit(), 1)
  assert.match(run.stderr(), new RegExp(`^culex: listeners\\[1\\] \\(ws\\): listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}$`, 'm'))
})

test('--help documents the configuration file, the environment and the new flags', () => {
  const r = runCli(['--help'])
  assert.equal(r.status, 0)
  for (const flag of ['--config', '--test-config', '--print-config', '--http-port', '--http-host', '--sys-interval', '--password-file', '--acl-file', '--allow-anonymous', '--log-format', '--log-level']) {
    assert.match(r.stdout, new RegExp(`^ +${flag}\\b`, 'm'), flag)
  }
  assert.match(r.stdout, /docs\/operations\.md/)
  assert.match(r.stdout, /CULEX_LIMITS__MAX_QUEUED=5/)
})
