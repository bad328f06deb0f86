import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once, skipWithout } from '../helpers/index.js'
import { makePki } from '../transports/certificates.js'
import { runExample } from './run-example.js'

async function connect(port: number, options: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, ...options })
  await once(client, 'connect')
  return client
}

/** Connects expecting a refusal; resolves to the CONNACK return code. */
function refusal(port: number, options: IClientOptions): Promise<number | undefined> {
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, reconnectPeriod: 0, ...options })
  return new Promise((resolve, reject) => {
    client.once('connect', () => reject(new Error('connection was accepted')))
    client.once('error', (error: Error & { code?: number }) => {
      client.end(true)
      resolve(error.code)
    })
  })
}

test('examples/basic.ts logs connections, subscriptions and publishes, and the app hears sensors', async () => {
  const example = runExample('basic.ts', { PORT: '0' })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const client = await connect(port, { clientId: 'sensor-1' })
    await client.subscribeAsync('sensors/#')
    await client.publishAsync('sensors/kitchen/temperature', '21.5')
    await example.waitFor(/connected: sensor-1/)
    await example.waitFor(/subscribed: sensor-1 to sensors\/# \(QoS 0\)/)
    await example.waitFor(/published: sensors\/kitchen\/temperature = 21\.5 by sensor-1/)
    await example.waitFor(/app got temperature 21\.5 on sensors\/kitchen\/temperature/)
    client.end()
    await example.waitFor(/disconnected: sensor-1 \(disconnect\)/)
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

test('examples/auth.ts checks passwords, client ids and per-topic rules', async () => {
  const example = runExample('auth.ts', { PORT: '0' })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    assert.equal(await refusal(port, { clientId: 'device-alice', username: 'alice', password: 'wrong' }), 4)
    assert.equal(await refusal(port, { clientId: 'device-bob', username: 'alice', password: 'wonderland' }), 2)
    const alice = await connect(port, { clientId: 'device-alice', username: 'alice', password: 'wonderland' })
    const bob = await connect(port, { clientId: 'device-bob', username: 'bob', password: 'builder' })
    await example.waitFor(/connected: device-alice as alice/)

    // The mqtt client rejects a SUBACK holding a refusal; the packet is on the error.
    const suback = await alice
      .subscribeAsync(['devices/device-alice/#', 'devices/device-bob/#', 'public/news', 'test/nosubscribe'])
      .then(() => assert.fail('expected refusals in the SUBACK'), (error: { packet?: { granted?: number[] } }) => error.packet)
    assert.deepEqual(suback?.granted, [0, 128, 0, 128])

    // Bob may publish only under his own tree: his own message reaches public/..., the other is dropped.
    const received: string[] = []
    alice.on('message', (topic) => received.push(topic))
    const echo = once(alice, 'message')
    await bob.publishAsync('devices/device-alice/cmd', 'spoofed', { qos: 1 })
    await bob.publishAsync('devices/device-bob/status', 'up', { qos: 1 })
    await alice.publishAsync('devices/device-alice/echo', 'mine', { qos: 1 })
    await echo
    assert.deepEqual(received, ['devices/device-alice/echo'])
    alice.end()
    bob.end()
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

test('examples/express-push.ts turns POST /notify into a message on the device topic', async () => {
  const example = runExample('express-push.ts', { MQTT_PORT: '0', HTTP_PORT: '0' })
  try {
    const httpPort = Number((await example.waitFor(/http listening on port (\d+)/))[1])
    const mqttPort = Number((await example.waitFor(/mqtt listening on port (\d+)/))[1])
    const phone = await connect(mqttPort, { clientId: 'phone-1' })
    await phone.subscribeAsync('devices/phone-1/notifications', { qos: 1 })
    const arrived = once<[string, Buffer]>(phone, 'message')
    const response = await fetch(`http://127.0.0.1:${httpPort}/notify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device: 'phone-1', text: 'your order shipped' }),
    })
    assert.equal(response.status, 202)
    const [topic, payload] = await arrived
    assert.equal(topic, 'devices/phone-1/notifications')
    assert.deepEqual(JSON.parse(payload.toString()), { text: 'your order shipped' })

    const bad = await fetch(`http://127.0.0.1:${httpPort}/notify`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device: 'a/#', text: 1 }),
    })
    assert.equal(bad.status, 400)
    const devices = (await (await fetch(`http://127.0.0.1:${httpPort}/devices`)).json()) as { connected: number }
    assert.equal(devices.connected, 1)
    phone.end()
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

/** GET / as a browser would: the session cookie the page sets, as 'session=...'. */
async function pageSessionCookie(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/`)
  assert.match(await response.text(), /mqtt\.connect/)
  const cookie = response.headers
    .getSetCookie()
    .map((c) => c.split(';')[0] ?? '')
    .find((c) => c.startsWith('session='))
  assert.ok(cookie !== undefined, 'GET / sets a session cookie')
  return cookie
}

/** Connects over WebSocket expecting a refusal; resolves to the CONNACK code. */
function wsRefusal(url: string, options: IClientOptions): Promise<number | undefined> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options })
  return new Promise((resolve, reject) => {
    client.once('connect', () => reject(new Error('connection was accepted')))
    client.once('error', (error: Error & { code?: number }) => {
      client.end(true)
      resolve(error.code)
    })
  })
}

test('examples/express.ts serves REST and MQTT over WebSocket on one port, to holders of its session cookie', async () => {
  const example = runExample('express.ts', { PORT: '0' })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const url = `ws://127.0.0.1:${port}/mqtt`
    const cookie = await pageSessionCookie(port)
    const lamp = mqtt.connect(url, { clientId: 'lamp-1', reconnectPeriod: 0, wsOptions: { headers: { cookie } } })
    await once(lamp, 'connect')
    await lamp.subscribeAsync('devices/lamp-1/command', { qos: 1 })
    const command = once<[string, Buffer]>(lamp, 'message')
    const response = await fetch(`http://127.0.0.1:${port}/devices/lamp-1/command`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ on: true }),
    })
    assert.equal(response.status, 202)
    assert.deepEqual(JSON.parse((await command)[1].toString()), { on: true })

    await lamp.publishAsync('devices/lamp-1/telemetry', '42 lux', { qos: 1 })
    const reading = (await (await fetch(`http://127.0.0.1:${port}/devices/lamp-1/telemetry`)).json()) as { reading: string }
    assert.equal(reading.reading, '42 lux')

    // No cookie, a cookie the app never issued, or another site's page: not authorized.
    assert.equal(await wsRefusal(url, { clientId: 'no-cookie' }), 5)
    assert.equal(await wsRefusal(url, { clientId: 'no-cookie-v5', protocolVersion: 5 }), 0x87)
    assert.equal(await wsRefusal(url, { clientId: 'forged', wsOptions: { headers: { cookie: 'session=forged' } } }), 5)
    assert.equal(await wsRefusal(url, { clientId: 'cross-site', wsOptions: { headers: { cookie, origin: 'http://evil.example' } } }), 5)

    // SIGTERM with a client still connected: the example closes the broker, then the server, and exits.
    const closed = once(lamp, 'close', 10000)
    assert.equal(await example.stop(), 0)
    await closed
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

test('examples/tls-client-certs.ts admits a device whose certificate CN is its client id, over mqtts and mosquitto_pub', { skip: skipWithout('openssl') }, async () => {
  const pki = makePki('device-42')
  const dir = mkdtempSync(join(tmpdir(), 'culex-example-pki-'))
  const write = (name: string, content: Buffer): string => {
    writeFileSync(join(dir, name), content)
    return join(dir, name)
  }
  const env = { PORT: '0', CA: write('ca.crt', pki.ca), KEY: write('server.key', pki.serverKey), CERT: write('server.crt', pki.serverCert) }
  const example = runExample('tls-client-certs.ts', env)
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const device = mqtt.connect({ protocol: 'mqtts', host: '127.0.0.1', port, ca: pki.ca, key: pki.clientKey, cert: pki.clientCert, clientId: 'device-42', reconnectPeriod: 0 })
    await once(device, 'connect')
    await example.waitFor(/device device-42 connected \(certificate [0-9A-F:]+\.\.\.\)/)
    device.end()
    const impostor = mqtt.connect({ protocol: 'mqtts', host: '127.0.0.1', port, ca: pki.ca, key: pki.clientKey, cert: pki.clientCert, clientId: 'device-43', reconnectPeriod: 0 })
    const refused = await new Promise<number | undefined>((resolve) => impostor.once('error', (e: Error & { code?: number }) => resolve(e.code)))
    assert.equal(refused, 2)
    impostor.end(true)
    if (skipWithout('mosquitto_pub') === undefined) {
      // An outside client: Mosquitto's own, with --cafile and the device certificate.
      const r = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '--cafile', env.CA, '--cert', write('device.crt', pki.clientCert), '--key', write('device.key', pki.clientKey), '-i', 'device-42', '-t', 'devices/device-42/up', '-m', 'hi'], { encoding: 'utf8', timeout: 10000 })
      assert.equal(r.status, 0, r.stderr)
    }
  } finally {
    assert.equal(await example.stop(), 0)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('examples/fastify.ts serves REST, MQTT over WebSocket and the dashboard on one port, and closes the broker with Fastify', async () => {
  const example = runExample('fastify.ts', { PORT: '0' })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const client = mqtt.connect(`ws://127.0.0.1:${port}/mqtt`, { clientId: 'listener', reconnectPeriod: 0 })
    await once(client, 'connect')
    await client.subscribeAsync('broadcast', { qos: 1 })
    const got = once<[string, Buffer]>(client, 'message')
    const sent = await fetch(`http://127.0.0.1:${port}/broadcast`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'hello' }) })
    assert.equal(sent.status, 202)
    assert.equal((await got)[1].toString(), 'hello')
    assert.deepEqual(await (await fetch(`http://127.0.0.1:${port}/clients`)).json(), { connected: 1 })
    // The dashboard plugin under /culex: the page, and the client in its API.
    assert.match(await (await fetch(`http://127.0.0.1:${port}/culex/`)).text(), /<title>Culex<\/title>/)
    const { clients } = (await (await fetch(`http://127.0.0.1:${port}/culex/api/v1/clients`)).json()) as { clients: Array<{ id: string; transport: string }> }
    assert.deepEqual(clients.map((c) => [c.id, c.transport]), [['listener', 'ws']])
    // SIGTERM closes the Fastify app, which closes the broker: the MQTT client sees its connection end.
    const closed = once(client, 'close', 5000)
    assert.equal(await example.stop(), 0)
    await closed
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

test('examples/operations.ts serves one /metrics (app, Node and broker), health probes, and drains on SIGTERM', async () => {
  const example = runExample('operations.ts', { PORT: '0', MQTT_PORT: '0' })
  try {
    const http = Number((await example.waitFor(/http listening on port (\d+)/))[1])
    const port = Number((await example.waitFor(/mqtt listening on port (\d+)/))[1])
    const device = await connect(port, { clientId: 'device-9' })
    await device.subscribeAsync('devices/device-9/cmd', { qos: 1 })
    const command = once<[string, Buffer]>(device, 'message')
    assert.equal((await fetch(`http://127.0.0.1:${http}/devices/device-9/reboot`, { method: 'POST' })).status, 202)
    assert.equal((await command)[1].toString(), 'reboot')

    const metrics = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text()
    assert.match(metrics, /^app_commands_total 1$/m, "the app's own counter")
    assert.match(metrics, /^nodejs_eventloop_lag_seconds /m, "Node's default metrics")
    assert.match(metrics, /^culex_clients_connected 1$/m, "the broker's gauge")
    assert.match(metrics, /^culex_messages_sent_total\{qos="1"\} 1$/m, "the broker's counter")
    assert.equal((await fetch(`http://127.0.0.1:${http}/ops/healthz`)).status, 200)
    assert.equal((await fetch(`http://127.0.0.1:${http}/ops/readyz`)).status, 200)

    // SIGTERM: the broker drains (the device is disconnected), then the app exits 0.
    const closed = once(device, 'close', 10000)
    assert.equal(await example.stop(), 0)
    await closed
    assert.match(example.output(), /draining\n[\s\S]*stopped/)
  } finally {
    example.child.kill('SIGKILL')
  }
})
