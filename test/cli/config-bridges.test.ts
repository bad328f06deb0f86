// culex's `bridges:` section and the dashboard's access settings (`http.dashboard`, `http.admins`),
// as real processes: schema errors with their paths, a bridge carrying messages to a second broker
// started here, --print-config redacting the bridge's secrets, HTTP Basic in front of the dashboard.
import assert from 'node:assert/strict'
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { Inbox, once, startBroker } from '../helpers/index.js'
import { CLI_WAIT_MS, runCli, startCli, within, type CliRun } from './run.js'

const HIDE = ['--import', './test/cli/hide-packages.ts']

function tempDir(t: { after(f: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-config-bridges-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

/** The lines culex itself printed (not the broker's log lines). */
function own(text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('culex: '))
}

/** SIGTERM, then exit 0 with `culex: stopped` as culex's last line. */
async function stopCleanly(run: CliRun): Promise<void> {
  run.child.kill('SIGTERM')
  assert.equal(await run.exit(), 0, run.output())
  assert.equal(own(run.stdout()).at(-1), 'culex: stopped')
}

/** A Mosquitto `$7$` (PBKDF2-SHA512) password line. */
function passwordLine(user: string, password: string): string {
  const salt = randomBytes(12)
  const hash = pbkdf2Sync(password, salt, 101, 64, 'sha512')
  return `${user}:$7$101$${salt.toString('base64')}$${hash.toString('base64')}\n`
}

/** `--test-config` on `yaml`: exit 2 and exactly `expected` (as `path: message`, after the file position) on stderr. */
function assertProblems(t: { after(f: () => void): void }, yaml: string, expected: string[]): void {
  const file = write(tempDir(t), 'culex.yaml', yaml)
  const r = runCli(['--config', file, '--test-config'])
  assert.equal(r.status, 2, r.stderr)
  assert.equal(r.stdout, '')
  const lines = r.stderr
    .trimEnd()
    .split('\n')
    .map((line) => line.replace(`culex: ${file}:`, '').replace(/^\d+:\d+ /, ''))
  assert.deepEqual(lines, expected)
}

test('bridges: schema errors give path: message and exit 2', (t) => {
  // Secrets in errors: a URL's password and a password of the wrong type are not echoed.
  assertProblems(
    t,
    `bridges:
  - name: cloud
    url: http://site:hunter2@cloud.example
    password: 123456
    topics: [{ filter: 'sensors/#' }]
`,
    [
      'bridges[0].url: expected mqtt://HOST[:PORT], mqtts://, ws:// or wss://..., got "http://site:***@cloud.example" (not an mqtt://, mqtts://, ws:// or wss:// URL)',
      'bridges[0].password: expected a string (not echoed: a secret)',
    ],
  )
  assertProblems(
    t,
    `bridges:
  - name: cloud
    url: http://cloud.example
    topics: [{ filter: 'sensors/#' }]
`,
    ['bridges[0].url: expected mqtt://HOST[:PORT], mqtts://, ws:// or wss://..., got "http://cloud.example" (not an mqtt://, mqtts://, ws:// or wss:// URL)'],
  )
  assertProblems(
    t,
    `bridges:
  - { name: cloud, url: "mqtt://a:1883", topics: [{ filter: a/# }] }
  - { name: cloud, url: "mqtt://b:1883", topics: [{ filter: b/# }] }
`,
    ['bridges[1].name: "cloud" is also the name of bridges[0]'],
  )
  assertProblems(
    t,
    `bridges:
  - name: cloud
    url: mqtt://cloud.example
    topics:
      - { filter: 'sensors/#', localPrefix: 'lab/+/' }
      - { filter: 'a/#/b' }
      - { filter: '', remotePrefix: 'x/y' }
`,
    [
      'bridges[0].topics[0].localPrefix: "lab/+/" may not contain wildcards',
      'bridges[0].topics[1]: "a/#/b" is not a valid topic filter',
      'bridges[0].topics[2]: an empty filter needs both localPrefix and remotePrefix',
    ],
  )
  assertProblems(
    t,
    `bridges:
  - name: cloud
    url: mqtt://cloud.example
    topics: [{ filter: 'sensors/#', direction: sideways }]
    keepalive: 60
`,
    [
      'bridges[0].topics[0].direction: expected one of in, out or both, got "sideways"',
      'bridges[0].keepalive: unknown key (did you mean keepAlive?)',
    ],
  )
  assertProblems(
    t,
    `bridges:
  - name: cloud
    url: mqtt://cloud.example
    topics: [{ filter: 'sensors/#' }]
    tls: { caFile: ca.pem }
`,
    ['bridges[0].tls: applies to mqtts:// and wss:// URLs only'],
  )
})

test('bridges: the files of bridges[].tls are read by --test-config', (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'culex.yaml', `bridges: [{ name: cloud, url: "mqtts://cloud.example:8883", topics: [{ filter: a/# }], tls: { caFile: missing-ca.pem } }]\n`)
  const r = runCli(['--config', file, '--test-config'])
  assert.equal(r.status, 2, r.stderr)
  assert.equal(r.stderr, `culex: bridges[0].tls.caFile: cannot read ${path.join(dir, 'missing-ca.pem')}: no such file\n`)
})

test('bridges: --print-config redacts the bridge password, the passphrase and a password in the URL', (t) => {
  const dir = tempDir(t)
  const file = write(
    dir,
    'culex.yaml',
    `bridges:
  - name: cloud
    url: "mqtts://site1:urlsecret@cloud.example:8883"
    username: site1
    password: hunter2
    tls: { certFile: c.pem, keyFile: k.pem, passphrase: keysecret }
    topics: [{ filter: 'sensors/#', remotePrefix: site1/ }]
`,
  )
  const r = runCli(['--config', file, '--print-config'])
  assert.equal(r.status, 0, r.stderr)
  assert.doesNotMatch(r.stdout, /hunter2|urlsecret|keysecret/)
  assert.match(r.stdout, /password: <redacted>/)
  assert.match(r.stdout, /passphrase: <redacted>/)
  assert.match(r.stdout, /url: mqtts:\/\/site1:\*\*\*@cloud\.example:8883/)
  assert.match(r.stdout, /username: site1/)
  assert.ok(r.stdout.includes(`certFile: ${path.join(dir, 'c.pem')}`), 'TLS files are relative to the config file')
})

test('bridges: a real run carries out topics to a second broker with the prefixes mapped, and logs the bridge; password and ACL files do not stop it', async (t) => {
  const remote = await startBroker({
    authenticate: ({ username, password }) => username === 'site1' && password?.toString() === 's3cret',
  })
  t.after(() => remote.close())
  const watcher = await remote.connect({ username: 'site1', password: 's3cret' })
  const inbox = new Inbox(watcher)
  await watcher.subscribeAsync('site1/#', { qos: 1 })

  const dir = tempDir(t)
  // Anonymous clients refused, alice may only publish: the bridge's own local client is not held by either.
  write(dir, 'passwd', passwordLine('alice', 'wonderland'))
  write(dir, 'acl', 'user alice\ntopic write lab/#\ntopic write elsewhere/#\n')
  const file = write(
    dir,
    'culex.yaml',
    `listeners: [{ type: tcp, port: 0, host: 127.0.0.1 }]
auth: { passwordFile: passwd, aclFile: acl }
bridges:
  - name: cloud
    url: "mqtt://127.0.0.1:${remote.port}"
    username: site1
    password: s3cret
    reconnectPeriod: 100
    topics:
      - { filter: 'sensors/#', direction: out, qos: 1, localPrefix: lab/, remotePrefix: site1/ }
drain: { timeoutMs: 5000 }
`,
  )
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const port = await run.port()
  await run.waitFor(new RegExp(`^culex: bridge cloud to mqtt://127\\.0\\.0\\.1:${remote.port}$`, 'm'))
  await run.waitFor(/^culex: bridge cloud up$/m)
  assert.doesNotMatch(run.output(), /s3cret/)

  const publisher = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username: 'alice', password: 'wonderland' })
  publisher.on('error', () => {})
  t.after(() => publisher.end(true))
  await within(once(publisher, 'connect'), 'a connection to culex', run)
  await within(publisher.publishAsync('lab/sensors/t1', '21.5', { qos: 1 }), 'PUBACK', run)
  await within(publisher.publishAsync('elsewhere/t1', 'not bridged', { qos: 1 }), 'PUBACK', run)
  await within(publisher.publishAsync('lab/sensors/t2', '22.0', { qos: 1 }), 'PUBACK', run)
  const first = await inbox.waitForTopic('site1/sensors/t1', CLI_WAIT_MS)
  assert.equal(first.payload, '21.5')
  // In order: t2 after t1, and nothing else crossed.
  assert.equal((await inbox.waitForTopic('site1/sensors/t2', CLI_WAIT_MS)).payload, '22.0')
  assert.deepEqual(
    inbox.messages.map((m) => m.topic),
    ['site1/sensors/t1', 'site1/sensors/t2'],
  )
  await within(publisher.endAsync(), 'the publisher to disconnect', run)
  await stopCleanly(run)
})

test('bridges: a bridge that cannot start (no mqtt package) is a startup failure, exit 1', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'culex.yaml', `listeners: [{ type: tcp, port: 0, host: 127.0.0.1 }]\nbridges: [{ name: cloud, url: "mqtt://127.0.0.1:1", topics: [{ filter: a/# }] }]\n`)
  const run = startCli(['--config', file], HIDE, { ...process.env, CULEX_TEST_HIDE: 'mqtt' })
  t.after(() => run.kill())
  assert.equal(await run.exit(), 1, run.output())
  assert.match(run.stderr(), /^culex: bridges\[0\] \(cloud\): .*mqtt/m)
})

/** GET `url` with Basic credentials when given; the status (the body read and dropped). */
async function status(url: string, run: CliRun, credentials?: string): Promise<number> {
  const headers: Record<string, string> = credentials === undefined ? {} : { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` }
  const response = await within(fetch(url, { headers }), `GET ${url}`, run)
  await response.arrayBuffer()
  return response.status
}

test('http.admins: the dashboard needs an admin of the password file; /metrics and health stay open', async (t) => {
  const dir = tempDir(t)
  write(dir, 'passwd', passwordLine('admin', 'adminpw') + passwordLine('bob', 'builder'))
  const file = write(
    dir,
    'culex.yaml',
    `listeners: [{ type: tcp, port: 0, host: 127.0.0.1 }]
auth: { passwordFile: passwd }
http: { port: 0, admins: [admin] }
`,
  )
  const run = startCli(['--config', file])
  t.after(() => run.kill())
  const [, base] = await run.waitFor(/^culex: dashboard, metrics and health on (http:\/\/127\.0\.0\.1:\d+) \(\/, \/metrics, \/healthz, \/readyz; dashboard for admin \(password file\); metrics and health without credentials\)$/m)
  await run.port()
  assert.equal(await status(`${base}/`, run), 401, 'no credentials')
  assert.equal(await status(`${base}/api/v1/stats`, run), 401, 'no credentials, API')
  assert.equal(await status(`${base}/`, run, 'admin:wrong'), 401, 'wrong password')
  assert.equal(await status(`${base}/`, run, 'nobody:adminpw'), 401, 'unknown user')
  assert.equal(await status(`${base}/`, run, 'bob:builder'), 403, 'a valid user who is not an admin: known, not allowed')
  assert.equal(await status(`${base}/`, run, 'admin:adminpw'), 200, 'the admin')
  assert.equal(await status(`${base}/api/v1/stats`, run, 'admin:adminpw'), 200, 'the admin, API')
  for (const open of ['/metrics', '/healthz', '/readyz']) assert.equal(await status(`${base}${open}`, run), 200, open)
  await stopCleanly(run)
})

test('http.dashboard: false serves no dashboard, /metrics still works', async (t) => {
  const run = startCli(['--port', '0', '--host', '127.0.0.1', '--http-port', '0'], [], { ...process.env, CULEX_HTTP__DASHBOARD: 'false' })
  t.after(() => run.kill())
  const [, base] = await run.waitFor(/^culex: metrics and health on (http:\/\/127\.0\.0\.1:\d+) \(\/metrics, \/healthz, \/readyz; no dashboard\)$/m)
  await run.port()
  assert.equal(await status(`${base}/`, run), 404)
  assert.equal(await status(`${base}/api/v1/stats`, run), 404)
  assert.equal(await status(`${base}/metrics`, run), 200)
  await stopCleanly(run)
})

test('http: a dashboard on a non-loopback host needs admins; admins need a password file', (t) => {
  assertProblems(t, 'http: { port: 9100, host: 0.0.0.0 }\n', [
    'http.host: the dashboard would be open to anyone who reaches 0.0.0.0: set http.admins (users of auth.passwordFile) or http.dashboard: false',
  ])
  assertProblems(t, 'http: { port: 9100, admins: [admin] }\n', ['http.admins: admins are checked against auth.passwordFile, and there is none'])
  // Either way out is accepted; so is the loopback default.
  const dir = tempDir(t)
  write(dir, 'passwd', passwordLine('admin', 'adminpw'))
  for (const yaml of [
    'http: { port: 9100, host: 0.0.0.0, dashboard: false }\n',
    'http: { port: 9100, host: "::", admins: [admin] }\nauth: { passwordFile: passwd }\n',
    'http: { port: 9100, host: localhost }\n',
  ]) {
    const r = runCli(['--config', write(dir, 'ok.yaml', yaml), '--test-config'])
    assert.equal(r.status, 0, `${yaml}: ${r.stderr}`)
  }
  // The flag gets the same check, naming it.
  const flag = runCli(['--http-port', '9100', '--http-host', '0.0.0.0', '--test-config'])
  assert.equal(flag.status, 2, flag.stderr)
  assert.match(flag.stderr, /^culex: --http-host http\.host: the dashboard would be open/m)
})
