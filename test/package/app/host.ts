// A host application as a user of the published package writes it. test/package/pack.test.ts
// copies it into a fresh app that installed the packed tarball, type-checks it there with
// `tsc --strict --exactOptionalPropertyTypes --skipLibCheck false` and runs the compiled JS.
// It serves MQTT over TCP and WebSocket (on free ports), talks to itself with raw MQTT packets,
// prints `host ok: ...` and exits 0 once the broker is closed; any failure throws (exit 1).
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import {
  Broker,
  ConnackReturnCode,
  DEFAULT_LIMITS,
  MemoryPersistence,
  ReasonCode,
  tcp,
  websocket,
  type AuthenticateRequest,
  type AuthenticateResult,
  type BrokerOptions,
  type Client,
  type ConnectRefusal,
  type DisconnectReason,
  type Listener,
  type Message,
  type PublishResult,
} from 'culex-mqtt'

const options: BrokerOptions = {
  authenticate: (request: AuthenticateRequest): AuthenticateResult =>
    request.username === 'app' && request.password?.toString() === 'secret'
      ? true
      : { reasonCode: ConnackReturnCode.BadUsernameOrPassword, reasonString: 'who are you?' },
  authorizePublish: (client: Client, message: Message) => message.topic.startsWith(`devices/${client.id}/`),
  authorizeSubscribe: (_client, subscription) => (subscription.topicFilter === 'admin/#' ? ReasonCode.NotAuthorized : true),
  limits: { maxConnections: DEFAULT_LIMITS.maxConnections / 10, connectTimeoutMs: 5000 },
  capabilities: { maximumQoS: 1 },
  persistence: new MemoryPersistence(),
}
const broker = new Broker(options)

/** Resolves with the next emission of a broker event. */
function next<T>(register: (resolve: (value: T) => void) => void): Promise<T> {
  return new Promise((resolve) => register(resolve))
}

const connected: Client[] = []
const disconnected: Array<[string, DisconnectReason]> = []
const refused: ConnectRefusal[] = []
broker.on('clientConnect', (client) => connected.push(client))
broker.on('clientDisconnect', (client, reason) => disconnected.push([client.id, reason]))
broker.on('connectRefused', (refusal) => refused.push(refusal))
broker.on('hostError', (error, source) => {
  console.error('host error', source.kind, error)
  process.exitCode = 1
})

const received: Message[] = []
const unsubscribe: () => void = await broker.subscribe('devices/+/telemetry', (message) => {
  received.push(message)
})

const tcpListener: Listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
const wsListener: Listener = await broker.listen(websocket({ port: 0, host: '127.0.0.1', path: '/mqtt' }))
const tcpPort = (tcpListener.address() as AddressInfo).port
const wsPort = (wsListener.address() as AddressInfo).port

/** A socket whose incoming bytes can be awaited. */
class Peer {
  private buffered = Buffer.alloc(0)
  private wake: (() => void) | undefined
  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk])
      this.wake?.()
    })
    socket.on('close', () => this.wake?.())
  }
  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new Peer(socket)))
      socket.once('error', reject)
    })
  }
  /** Waits until `until(buffered)` returns a length, then takes that many bytes. */
  async take(until: (bytes: Buffer) => number | undefined): Promise<Buffer> {
    for (;;) {
      const length = until(this.buffered)
      if (length !== undefined) {
        const taken = this.buffered.subarray(0, length)
        this.buffered = this.buffered.subarray(length)
        return taken
      }
      if (this.socket.readableEnded || this.socket.destroyed) throw new Error(`connection closed; got ${this.buffered.toString('hex')}`)
      await new Promise<void>((resolve) => (this.wake = resolve))
    }
  }
  bytes(n: number): Promise<Buffer> {
    return this.take((b) => (b.length >= n ? n : undefined))
  }
}

const str = (s: string): Buffer => Buffer.concat([Buffer.from([s.length >> 8, s.length & 0xff]), Buffer.from(s)])
const packet = (header: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([header, body.length]), body])
/** An MQTT 3.1.1 CONNECT with a user name and password. */
const connect = (clientId: string, username: string, password: string): Buffer =>
  packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 30]), str(clientId), str(username), str(password)]))
const publish = (topic: string, payload: string): Buffer => packet(0x30, Buffer.concat([str(topic), Buffer.from(payload)]))
const DISCONNECT = Buffer.from([0xe0, 0])

// MQTT over TCP: refused with a wrong password, then accepted; the client publishes to the host's subscription.
const intruder = await Peer.open(tcpPort)
intruder.socket.write(connect('pack-intruder', 'app', 'wrong'))
assert.deepEqual([...(await intruder.bytes(4))], [0x20, 2, 0, ConnackReturnCode.BadUsernameOrPassword])
intruder.socket.destroy()
assert.equal(refused[0]?.reasonCode, ConnackReturnCode.BadUsernameOrPassword)

const device = await Peer.open(tcpPort)
const deviceConnected = next<Client>((resolve) => broker.once('clientConnect', resolve))
device.socket.write(connect('pack-tcp', 'app', 'secret'))
assert.deepEqual([...(await device.bytes(4))], [0x20, 2, 0, 0])
const client = await deviceConnected
assert.equal(broker.getClient('pack-tcp'), client)
const fields: { id: string; username: string | undefined; transport: string; remoteAddress: string | undefined; keepAlive: number } = client
assert.deepEqual(
  { id: fields.id, username: fields.username, transport: fields.transport, remoteAddress: fields.remoteAddress, keepAlive: fields.keepAlive },
  { id: 'pack-tcp', username: 'app', transport: 'tcp', remoteAddress: '127.0.0.1', keepAlive: 30 },
)
assert.equal(client.protocolVersion satisfies 3 | 4 | 5, 4)
assert.equal(client.connected, true)
assert.equal(client.certificate, undefined)
assert.equal(JSON.parse(JSON.stringify(client)).id, 'pack-tcp')

const telemetry = next<Message>((resolve) => broker.once('publish', (message) => resolve(message)))
device.socket.write(publish('devices/pack-tcp/telemetry', '21.5'))
assert.equal((await telemetry).payload.toString(), '21.5')
assert.equal(received.at(-1)?.payload.toString(), '21.5')

// The host publishes; its own subscription matches.
const result: PublishResult = await broker.publish({
  topic: 'devices/pack-host/telemetry',
  payload: 'from the host',
  qos: 1,
  properties: { contentType: 'text/plain', userProperties: [['source', 'pack-test']] },
})
assert.equal(result.matched, 1)
assert.equal(received.at(-1)?.properties?.contentType, 'text/plain')
unsubscribe()

const gone = next<DisconnectReason>((resolve) => broker.once('clientDisconnect', (_client, reason) => resolve(reason)))
device.socket.write(DISCONNECT)
assert.equal(await gone, 'disconnect')

// MQTT over WebSocket: a raw upgrade (subprotocol mqtt), then CONNECT in a masked binary frame.
const browser = await Peer.open(wsPort)
browser.socket.write(
  'GET /mqtt?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
)
const head = (await browser.take((b) => {
  const end = b.indexOf('\r\n\r\n')
  return end === -1 ? undefined : end + 4
})).toString()
assert.match(head, /^HTTP\/1\.1 101 /)
assert.match(head, /sec-websocket-protocol: mqtt/i)
const wsConnected = next<Client>((resolve) => broker.once('clientConnect', resolve))
const mask = Buffer.from([1, 2, 3, 4])
const body = connect('pack-ws', 'app', 'secret')
browser.socket.write(Buffer.concat([Buffer.from([0x82, 0x80 | body.length]), mask, body.map((byte, i) => byte ^ (mask[i % 4] ?? 0))]))
assert.deepEqual([...(await browser.bytes(6))], [0x82, 4, 0x20, 2, 0, 0])
const wsClient = await wsConnected
assert.equal(wsClient.transport, 'ws')
const request: IncomingMessage | undefined = wsClient.request
assert.equal(request?.url, '/mqtt?token=abc')

await broker.close()
assert.deepEqual(broker.clients, [])
assert.deepEqual(
  disconnected.map(([id]) => id),
  ['pack-tcp', 'pack-ws'],
)
console.log(`host ok: tcp ${tcpPort}, ws ${wsPort}, ${connected.length} clients, ${received.length} messages`)
