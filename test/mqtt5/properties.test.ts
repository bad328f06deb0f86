/**
 * Invalid MQTT 5 properties after CONNECT: the broker answers DISCONNECT with the right reason
 * code, then closes, and goes on serving other clients.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { gone, hex, TEST_TIMEOUT, withV5Broker } from '../helpers/index.js'

/** A QoS 0 PUBLISH on topic 't' whose property block is `props` (raw bytes, length included). */
function publishWithProperties(props: number[]): Buffer {
  const body = [0x00, 0x01, 0x74, ...props, 0x78]
  return Buffer.from([0x30, body.length, ...body])
}

const cases: Array<[string, number[], number]> = [
  // [MQTT-2.2.2-1] (5.0 section 2.2.2.2) an unknown property identifier is a malformed packet
  ['an unknown property identifier', [0x02, 0x7f, 0x00], 0x81],
  // A property that does not belong on PUBLISH (Session Expiry Interval) is malformed
  ['a property not allowed on PUBLISH', [0x05, 0x11, 0x00, 0x00, 0x00, 0x0a], 0x81],
  // [MQTT-2.2.2-2] (5.0) a single-valued property twice is a protocol error
  ['a duplicated single-valued property', [0x04, 0x01, 0x00, 0x01, 0x01], 0x82],
  // [MQTT-1.5.4-1] invalid UTF-8 in a string property (Content Type) is malformed
  ['invalid UTF-8 in a string property', [0x05, 0x03, 0x00, 0x02, 0xc0, 0xaf], 0x81],
  // Property length running past the packet
  ['a property length longer than the packet', [0x20, 0x01, 0x00], 0x81],
]

describe('invalid properties', () => {
  for (const [name, props, code] of cases) {
    test(`${name}: DISCONNECT 0x${code.toString(16)}, then close; others still served`, { timeout: TEST_TIMEOUT }, async () => {
      await withV5Broker({}, async (b) => {
        const { raw } = await b.rawConnect({ clientId: 'bad' })
        raw.socket.write(publishWithProperties(props))
        const disconnect = await raw.next('disconnect')
        assert.equal(hex(disconnect.reasonCode), hex(code))
        await raw.waitClosed()
        const { raw: good } = await b.rawConnect({ clientId: 'good' })
        const suback = await good.subscribe([{ topicFilter: 'x', qos: 0 }])
        assert.deepEqual(suback.reasonCodes, [0])
      })
    })
  }
})

describe('hooks answering with MQTT 5 reason codes', () => {
  test('authorizePublish answering 0x97 gives PUBACK 0x97 and PUBREC 0x97; the message is dropped', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({ authorizePublish: (_client, message) => (message.topic === 'metered' ? 0x97 : true) }, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: '#', qos: 2 }])
      const { raw } = await b.rawConnect({ clientId: 'pub' })
      raw.publish('metered', 'x', 1, { packetId: 1 })
      assert.equal(hex((await raw.next('puback')).reasonCode), hex(0x97))
      raw.publish('metered', 'x', 2, { packetId: 2 })
      assert.equal(hex((await raw.next('pubrec')).reasonCode), hex(0x97))
      raw.publish('free', 'y', 1, { packetId: 3 })
      const delivered = await sub.next('publish')
      assert.equal(delivered.topic, 'free')
    })
  })
})

describe('the host closing a client', () => {
  test('client.close(0x97, reason) sends DISCONNECT 0x97 with the reason string (a quota the host enforces)', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const connected = new Promise<import('../../src/index.js').Client>((resolve) => b.broker.once('clientConnect', resolve))
      const { raw } = await b.rawConnect({ clientId: 'greedy' })
      ;(await connected).close(0x97, 'daily quota used up')
      const disconnect = await raw.next('disconnect')
      assert.equal(hex(disconnect.reasonCode), hex(0x97))
      assert.equal(disconnect.properties?.reasonString, 'daily quota used up')
      await raw.waitClosed()
    })
  })
})

describe('events carry MQTT 5 properties', () => {
  test('the publish event and broker.subscribe handlers see the publisher\'s properties', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const seen = new Promise<import('../../src/index.js').Message>((resolve) => b.broker.once('publish', (message) => resolve(message)))
      const handled = new Promise<import('../../src/index.js').Message>((resolve) => {
        void b.broker.subscribe('props/#', (message) => resolve(message))
      })
      const { raw } = await b.rawConnect({ clientId: 'pub' })
      const properties = { contentType: 'application/json', userProperties: [['a', '1'], ['b', '2']] as Array<[string, string]>, correlationData: Buffer.from('c1') }
      raw.publish('props/x', '{}', 0, { properties })
      for (const message of [await seen, await handled]) {
        assert.equal(message.properties?.contentType, 'application/json')
        assert.deepEqual(message.properties?.userProperties, [['a', '1'], ['b', '2']])
        assert.ok(message.properties?.correlationData?.equals(Buffer.from('c1')))
      }
    })
  })
})

describe('edges of the QoS 2 flow and session expiry', () => {
  test('PUBREC for an unknown packet identifier gets PUBREL 0x92', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'odd' })
      raw.send({ type: 'pubrec', packetId: 77 })
      const pubrel = await raw.next('pubrel')
      assert.equal(pubrel.packetId, 77)
      assert.equal(hex(pubrel.reasonCode), hex(0x92))
    })
  })

  test('Session Expiry Interval 0xFFFFFFFF: the offline session has no expiry timer and is resumed', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'forever', cleanSession: false, properties: { sessionExpiryInterval: 0xffffffff } })
      const left = gone(b, 'forever')
      raw.send({ type: 'disconnect' })
      await left // reported once the broker is done with the connection (and has scheduled any expiry)
      await raw.waitClosed()
      const sessions = (b.broker as unknown as { core: { sessions: Map<string, { expiryTimer: unknown; link: unknown }> } }).core.sessions
      const session = sessions.get('forever')
      assert.ok(session !== undefined && session.link === null, 'the session outlives the connection')
      assert.equal(session.expiryTimer, undefined, 'no expiry is scheduled')
      const { connack } = await b.rawConnect({ clientId: 'forever', cleanSession: false, properties: { sessionExpiryInterval: 0xffffffff } })
      assert.equal(connack.sessionPresent, true)
    })
  })
})
