/**
 * The same password and ACL files, loaded by a real Mosquitto (`mosquitto -c conf`) and by Culex
 * through `mosquittoAuth`, and the same cases run against both: connect (right and wrong
 * passwords, $7$ from mosquitto_passwd and a hand-made $6$, anonymous allowed or not), publish
 * (allowed, refused, and not delivered), subscribe and receive (live and retained messages,
 * patterns with %c and %u, deny lines, $ topics). Each case must give the same outcome on both
 * brokers, and the outcome expected.
 */
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { mosquittoAuth } from '../../src/auth/mosquitto/index.js'
import { connackCode, freePort, Inbox, realTimer, skipWithout, startBroker, subackCodes, type TestBroker } from '../helpers/index.js'

const run = promisify(execFile)
/** Debian puts the broker in /usr/sbin, which a non-root PATH may lack. */
const MOSQUITTO = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto'
const skip = (MOSQUITTO === 'mosquitto' ? skipWithout('mosquitto') : undefined) ?? skipWithout('mosquitto_passwd')
const fixture = new URL('./fixtures/sha512.passwd', import.meta.url)

/** The ACL both brokers load. */
const ACL = `# Anonymous clients: the lines before the first user line.
topic read public/#
topic write public/anon
topic deny public/secret

user admin
topic readwrite #
topic readwrite $custom/#

user alice
topic readwrite alice/#
topic read shared/#
topic deny shared/secret
topic write shared/inbox
topic read $custom/alice

user bob
topic read alice/news
topic read fence/bob
topic write

user dave
topic read #

pattern read fence/%c
pattern write fence/#
pattern readwrite clients/%c/#
pattern read users/%u/#
pattern deny alice/private
`

const ADMIN = { username: 'admin', password: 'admin-pw' }
const ALICE = { username: 'alice', password: 'alice-pw' }
const BOB = { username: 'bob', password: 'bob-pw' }
/** The hand-made $6$ user of fixtures/sha512.passwd. */
const DAVE = { username: 'dave', password: 'sesame' }

/** One broker under test: a listener with allow_anonymous true and one with it false. */
interface Target {
  name: string
  open: number
  closed: number
}

/** A mosquitto process started for this file. */
interface Mosquitto {
  port: number
  output(): string
  stop(): Promise<void>
}

/** Whether a TCP connection to the port is accepted now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** Starts mosquitto with the files and waits until it accepts connections (bounded; fails fast if it exits). */
async function startMosquitto(dir: string, name: string, allowAnonymous: boolean, passwordFile: string, aclFile: string): Promise<Mosquitto> {
  const port = await freePort()
  const conf = join(dir, `${name}.conf`)
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      `allow_anonymous ${allowAnonymous}`,
      `password_file ${passwordFile}`,
      `acl_file ${aclFile}`,
      'persistence false',
      // As root, mosquitto would switch to the "mosquitto" user, who cannot read our temporary files.
      `user ${userInfo().username}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
    ].join('\n') + '\n',
  )
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let output = ''
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true
      children.delete(child)
      resolve()
    }),
  )
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGTERM')
    await exit
  }
  const deadline = performance.now() + 5000
  while (!(await accepts(port))) {
    if (exited || performance.now() > deadline) {
      await stop()
      throw new Error(`mosquitto (${name}) did not start listening on ${port}:\n${output}`)
    }
    // Poll again shortly: the deadline above bounds the wait, this only paces the retries.
    await new Promise<void>((resolve) => realTimer(20, resolve))
  }
  return { port, output: () => output, stop }
}

/** Connects and returns the client once its CONNACK accepted it. */
async function connect(port: number, options: IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect({ host: '127.0.0.1', port, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error(`${JSON.stringify(options)}: closed before CONNACK`)))
  })
  client.removeAllListeners('error')
  client.on('error', () => {})
  return client
}


/** Publishes at QoS 1 and returns the PUBACK reason code (0 for a 3.1.1 PUBACK), refusals included. */
function pubackCode(client: MqttClient, topic: string, payload: string, retain = false): Promise<number> {
  return new Promise((resolve) => {
    client.publish(topic, payload, { qos: 1, retain }, (error, packet) => {
      resolve(error ? ((error as Error & { code?: number }).code ?? -1) : ((packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0))
    })
  })
}

/** Subscribes at QoS 1 and returns the SUBACK codes, refusals included. */
function subscribe(client: MqttClient, filters: string[]): Promise<number[]> {
  return subackCodes(client, Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])))
}

/** Closes every client a case opened (forced: their sockets are destroyed at once). */
function endAll(clients: MqttClient[]): void {
  for (const c of clients) c.end(true)
}

// ---------------------------------------------------------------------------------------------
// The cases, with the outcome Mosquitto 2.0 gives (checked against the real one below).

const CONNECTS: Array<{ label: string; listener: 'open' | 'closed'; options: IClientOptions; expected: number }> = [
  { label: 'admin ($7$ from mosquitto_passwd), right password', listener: 'open', options: ADMIN, expected: 0 },
  { label: 'alice, wrong password', listener: 'open', options: { ...ALICE, password: 'nope' }, expected: 5 },
  { label: 'alice, wrong password, MQTT 5', listener: 'open', options: { ...ALICE, password: 'nope', protocolVersion: 5 }, expected: 0x87 },
  { label: 'alice, no password', listener: 'open', options: { username: 'alice' }, expected: 5 },
  { label: 'mallory, not in the file', listener: 'open', options: { username: 'mallory', password: 'alice-pw' }, expected: 5 },
  { label: 'dave ($6$ made by hand), right password', listener: 'open', options: DAVE, expected: 0 },
  { label: 'dave ($6$ made by hand), wrong password', listener: 'open', options: { ...DAVE, password: 'Sesame' }, expected: 5 },
  { label: 'anonymous, allow_anonymous true', listener: 'open', options: {}, expected: 0 },
  { label: 'anonymous, allow_anonymous false', listener: 'closed', options: {}, expected: 5 },
  { label: 'anonymous, allow_anonymous false, MQTT 5', listener: 'closed', options: { protocolVersion: 5 }, expected: 0x87 },
  { label: 'alice, allow_anonymous false', listener: 'closed', options: ALICE, expected: 0 },
]

const PUBLISHES: Array<{ label: string; options: IClientOptions; topic: string; expected: string }> = [
  { label: 'alice -> alice/x (readwrite)', options: ALICE, topic: 'alice/x', expected: 'acked, delivered' },
  { label: 'alice -> bob/x (no rule)', options: ALICE, topic: 'bob/x', expected: 'refused, dropped' },
  { label: 'alice -> shared/secret (deny)', options: ALICE, topic: 'shared/secret', expected: 'refused, dropped' },
  { label: 'alice -> shared/inbox (write)', options: ALICE, topic: 'shared/inbox', expected: 'acked, delivered' },
  { label: 'alice -> shared/a (read only)', options: ALICE, topic: 'shared/a', expected: 'refused, dropped' },
  { label: 'anonymous -> public/anon (write)', options: {}, topic: 'public/anon', expected: 'acked, delivered' },
  { label: 'anonymous -> public/x (read only)', options: {}, topic: 'public/x', expected: 'refused, dropped' },
  { label: 'anonymous 3.1.1 -> public/x (read only)', options: { protocolVersion: 4 }, topic: 'public/x', expected: 'acked, dropped' },
  { label: 'bob as bob-dev -> clients/bob-dev/x (%c)', options: { ...BOB, clientId: 'bob-dev' }, topic: 'clients/bob-dev/x', expected: 'acked, delivered' },
  { label: 'bob as bob-dev -> clients/other/x', options: { ...BOB, clientId: 'bob-dev' }, topic: 'clients/other/x', expected: 'refused, dropped' },
  { label: "bob as bob/dev -> clients/bob/dev/x (a '/' in the client id is substituted)", options: { ...BOB, clientId: 'bob/dev' }, topic: 'clients/bob/dev/x', expected: 'acked, delivered' },
  { label: "bob -> write (the line 'topic write' is the topic \"write\", readwrite)", options: BOB, topic: 'write', expected: 'acked, delivered' },
  { label: 'alice -> alice/private (her topic line beats the pattern deny)', options: ALICE, topic: 'alice/private', expected: 'acked, delivered' },
  { label: 'bob -> $SYS/x', options: BOB, topic: '$SYS/x', expected: 'refused, dropped' },
  { label: 'dave -> dave/x (read only)', options: DAVE, topic: 'dave/x', expected: 'refused, dropped' },
  { label: 'admin -> $custom/x', options: ADMIN, topic: '$custom/x', expected: 'acked, delivered' },
]

const RETAINED = ['shared/ret', 'shared/secret', 'public/ret', 'public/secret']
const LIVE = [
  'public/a',
  'public/secret',
  'alice/x',
  'alice/news',
  'alice/private',
  'shared/a',
  'shared/secret',
  'users/alice/x',
  'users/bob/x',
  'users/%u/x',
  'clients/bob-sub/x',
  'clients/other/x',
  'dave/x',
  '$custom/alice',
  '$custom/x',
]

const SUBSCRIBERS: Array<{ label: string; options: IClientOptions; filters: string[]; fence: string; expected: string[] }> = [
  {
    label: 'anonymous',
    options: { clientId: 'anon-sub' },
    // 'users/%u/x' is not readable: a %u pattern is skipped for clients without a user name.
    filters: ['public/#', 'alice/#', 'users/#'],
    fence: 'fence/anon-sub',
    expected: ['live:public/a', 'retained:public/ret'],
  },
  {
    label: 'alice',
    options: { ...ALICE, clientId: 'alice-sub' },
    filters: ['shared/#', 'alice/#', 'users/#', '$custom/#'],
    fence: 'fence/alice-sub',
    // alice/private: her own topic line grants it, and the pattern deny comes too late.
    expected: ['live:$custom/alice', 'live:alice/news', 'live:alice/private', 'live:alice/x', 'live:shared/a', 'live:users/alice/x', 'retained:shared/ret'],
  },
  {
    label: 'bob',
    options: { ...BOB, clientId: 'bob-sub' },
    filters: ['alice/#', 'clients/#'],
    fence: 'fence/bob-sub',
    expected: ['live:alice/news', 'live:clients/bob-sub/x'],
  },
  {
    label: "bob with '+' in its client id (no patterns)",
    options: { ...BOB, clientId: 'bob+evil' },
    filters: ['alice/news', 'users/#'],
    fence: 'fence/bob',
    expected: ['live:alice/news'],
  },
  {
    label: "dave ('topic read #' does not reach $ topics)",
    options: { ...DAVE, clientId: 'dave-sub' },
    filters: ['dave/#', '$custom/#'],
    fence: 'fence/dave-sub',
    expected: ['live:dave/x'],
  },
]

// ---------------------------------------------------------------------------------------------
// What each broker does with the cases.

async function observeConnects(t: Target): Promise<Record<string, number>> {
  const seen: Record<string, number> = {}
  for (const c of CONNECTS) seen[c.label] = await connackCode(c.listener === 'open' ? t.open : t.closed, c.options)
  return seen
}

async function observePublishes(t: Target): Promise<Record<string, string>> {
  const clients: MqttClient[] = []
  try {
    const watcher = await connect(t.open, { ...ADMIN, clientId: 'watcher' })
    clients.push(watcher)
    const inbox = new Inbox(watcher)
    await subscribe(watcher, ['#', '$custom/#'])
    const seen: Record<string, string> = {}
    for (const [i, c] of PUBLISHES.entries()) {
      const publisher = await connect(t.open, { protocolVersion: 5, ...c.options })
      clients.push(publisher)
      const code = await pubackCode(publisher, c.topic, c.label)
      // Same publisher, same QoS: the marker arrives after the case's message, if that was routed.
      const marker = `marker ${i}`
      assert.ok((await pubackCode(publisher, 'fence/watcher', marker)) < 0x80, `${t.name}: marker of ${c.label}`)
      await inbox.waitFor(marker)
      seen[c.label] = `${code >= 0x80 ? 'refused' : 'acked'}, ${inbox.withPayload(c.label).length > 0 ? 'delivered' : 'dropped'}`
    }
    return seen
  } finally {
    endAll(clients)
  }
}

async function observeDeliveries(t: Target): Promise<{ subacks: Record<string, number[]>; received: Record<string, string[]> }> {
  const clients: MqttClient[] = []
  try {
    const admin = await connect(t.open, { ...ADMIN, clientId: 'deliverer' })
    clients.push(admin)
    for (const topic of RETAINED) assert.equal(await pubackCode(admin, topic, `retained:${topic}`, true), 0, `${t.name}: retained ${topic}`)
    const subacks: Record<string, number[]> = {}
    const inboxes = new Map<string, Inbox>()
    for (const s of SUBSCRIBERS) {
      const client = await connect(t.open, s.options)
      clients.push(client)
      inboxes.set(s.label, new Inbox(client))
      assert.deepEqual(await subscribe(client, [s.fence]), [1], `${t.name}: ${s.label} subscribes to its fence`)
      subacks[s.label] = await subscribe(client, s.filters)
    }
    for (const topic of LIVE) assert.equal(await pubackCode(admin, topic, `live:${topic}`), 0, `${t.name}: live ${topic}`)
    // One publisher for everything: each subscriber's marker comes after whatever else it was sent.
    for (const s of SUBSCRIBERS) assert.equal(await pubackCode(admin, s.fence, `fence:${s.label}`), 0)
    const received: Record<string, string[]> = {}
    for (const s of SUBSCRIBERS) {
      const inbox = inboxes.get(s.label) as Inbox
      await inbox.waitFor(`fence:${s.label}`)
      received[s.label] = inbox.messages
        .map((m) => m.payload)
        .filter((p) => !p.startsWith('fence:'))
        .sort()
    }
    return { subacks, received }
  } finally {
    endAll(clients)
  }
}

// ---------------------------------------------------------------------------------------------

describe('Culex and Mosquitto 2.0, side by side, with the same password and ACL files', { skip, timeout: 20_000 }, () => {
  let dir = ''
  const started: Mosquitto[] = []
  const brokers: TestBroker[] = []
  let mosquitto: Target
  let culex: Target

  before(async () => {
    if (skip !== undefined) return
    dir = mkdtempSync(join(tmpdir(), 'culex-mosquitto-side-'))
    const passwordFile = join(dir, 'passwd')
    const aclFile = join(dir, 'acl')
    await run('mosquitto_passwd', ['-b', '-c', passwordFile, ADMIN.username, ADMIN.password])
    for (const u of [ALICE, BOB]) await run('mosquitto_passwd', ['-b', passwordFile, u.username, u.password])
    appendFileSync(passwordFile, readFileSync(fixture))
    writeFileSync(aclFile, ACL)
    const [open, closed] = await Promise.all([
      startMosquitto(dir, 'open', true, passwordFile, aclFile),
      startMosquitto(dir, 'closed', false, passwordFile, aclFile),
    ])
    started.push(open, closed)
    mosquitto = { name: 'mosquitto', open: open.port, closed: closed.port }
    const culexOpen = await startBroker({ ...mosquittoAuth({ passwordFile, aclFile, allowAnonymous: true }).hooks })
    brokers.push(culexOpen)
    const culexClosed = await startBroker({ ...mosquittoAuth({ passwordFile, aclFile }).hooks })
    brokers.push(culexClosed)
    culex = { name: 'culex', open: culexOpen.port, closed: culexClosed.port }
  })

  after(async () => {
    await Promise.all([...brokers.map((b) => b.close()), ...started.map((m) => m.stop())])
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  test('CONNECT: the same CONNACK codes (5 / 0x87 for every refusal)', async () => {
    const theirs = await observeConnects(mosquitto)
    const ours = await observeConnects(culex)
    assert.deepEqual(ours, theirs)
    assert.deepEqual(theirs, Object.fromEntries(CONNECTS.map((c) => [c.label, c.expected])))
  })

  test('PUBLISH: the same refusals (WRITE access), and refused messages reach no one', async () => {
    const theirs = await observePublishes(mosquitto)
    const ours = await observePublishes(culex)
    assert.deepEqual(ours, theirs)
    assert.deepEqual(theirs, Object.fromEntries(PUBLISHES.map((c) => [c.label, c.expected])))
  })

  test('SUBSCRIBE is granted on both; what is received (live and retained) follows READ access', async () => {
    const theirs = await observeDeliveries(mosquitto)
    const ours = await observeDeliveries(culex)
    assert.deepEqual(ours, theirs)
    assert.deepEqual(
      theirs.subacks,
      Object.fromEntries(SUBSCRIBERS.map((s) => [s.label, s.filters.map(() => 1)])),
    )
    assert.deepEqual(theirs.received, Object.fromEntries(SUBSCRIBERS.map((s) => [s.label, s.expected])))
  })
})
