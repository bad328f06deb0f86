/**
 * MQTT 5 and MQTT 3.1.1 clients on the same broker: messages, retained messages and wills cross
 * protocol versions both ways, with MQTT 5 properties dropped towards 3.1.1 clients (a 3.1.1
 * PUBLISH has no place for them) and the rest of the message intact.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { QoS } from '../../src/protocol/packets.js'
import { fence, gone, TEST_TIMEOUT, withV5Broker } from '../helpers/index.js'

const V5_PROPERTIES = {
  payloadFormatIndicator: true,
  messageExpiryInterval: 120,
  contentType: 'text/plain',
  responseTopic: 'reply/here',
  correlationData: Buffer.from('c-1'),
  userProperties: { k: ['v1', 'v2'], other: 'x' },
}

describe('MQTT 5 <-> 3.1.1 messages', () => {
  for (const qos of [0, 1, 2] as QoS[]) {
    test(`QoS ${qos}: a v5 publisher's message (with properties) reaches a 3.1.1 subscriber intact, and a 3.1.1 publisher's reaches a v5 subscriber`, { timeout: TEST_TIMEOUT }, async () => {
      await withV5Broker({}, async (b) => {
        const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
        const v5 = await b.mqtt({ clientId: 'v5' })
        await v4.client.subscribeAsync('x/from5', { qos: 2 })
        await v5.client.subscribeAsync('x/from4', { qos: 2 })
        await v5.client.publishAsync('x/from5', 'hello 3.1.1', { qos, properties: V5_PROPERTIES })
        await v4.client.publishAsync('x/from4', 'hello 5', { qos })
        const at4 = await v4.inbox.waitFor('hello 3.1.1')
        assert.equal(at4.topic, 'x/from5')
        assert.equal(at4.packet.qos, qos)
        assert.equal(at4.packet.retain, false)
        assert.equal(at4.packet.properties, undefined)
        const at5 = await v5.inbox.waitFor('hello 5')
        assert.equal(at5.topic, 'x/from4')
        assert.equal(at5.packet.qos, qos)
        assert.equal(at5.packet.retain, false)
        assert.equal(at5.packet.properties?.userProperties, undefined)
        assert.equal(at5.packet.properties?.messageExpiryInterval, undefined)
      })
    })
  }

  test('a v5 publisher using a topic alias reaches a 3.1.1 subscriber on the real topic', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
      await v4.client.subscribeAsync('x/aliased', { qos: 1 })
      const { raw } = await b.rawConnect({ clientId: 'v5-raw' })
      raw.publish('x/aliased', 'first', 1, { packetId: 1, properties: { topicAlias: 2 } })
      raw.publish('', 'second', 1, { packetId: 2, properties: { topicAlias: 2 } })
      assert.equal((await v4.inbox.waitFor('first')).topic, 'x/aliased')
      assert.equal((await v4.inbox.waitFor('second')).topic, 'x/aliased')
    })
  })
})

describe('MQTT 5 <-> 3.1.1 retained messages', () => {
  test("a v5 publisher's retained message is sent to a later 3.1.1 subscriber with RETAIN 1, properties dropped", { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const v5 = await b.mqtt({ clientId: 'v5' })
      await v5.client.publishAsync('r/from5', 'kept by 5', { qos: 1, retain: true, properties: V5_PROPERTIES })
      const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
      await v4.client.subscribeAsync('r/#', { qos: 1 })
      const got = await v4.inbox.waitFor('kept by 5')
      assert.equal(got.topic, 'r/from5')
      assert.equal(got.packet.retain, true)
      assert.equal(got.packet.qos, 1)
      assert.equal(got.packet.properties, undefined)
    })
  })

  test("a 3.1.1 publisher's retained message is sent to a later v5 subscriber with RETAIN 1", { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
      await v4.client.publishAsync('r/from4', 'kept by 4', { qos: 1, retain: true })
      const v5 = await b.mqtt({ clientId: 'v5' })
      await v5.client.subscribeAsync('r/#', { qos: 1 })
      const got = await v5.inbox.waitFor('kept by 4')
      assert.equal(got.topic, 'r/from4')
      assert.equal(got.packet.retain, true)
      assert.equal(got.packet.qos, 1)
      assert.equal(got.packet.properties?.messageExpiryInterval, undefined)
    })
  })

  test('the retained message of one version is replaced and cleared by the other', { timeout: TEST_TIMEOUT }, async () => {
    // MQTT 5 [MQTT-3.3.1-5] a retained PUBLISH replaces the stored one; [MQTT-3.3.1-6] an empty one removes it
    await withV5Broker({}, async (b) => {
      const v5 = await b.mqtt({ clientId: 'v5' })
      const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
      await v5.client.publishAsync('r/shared', 'by 5', { qos: 1, retain: true, properties: { contentType: 'text/plain' } })
      await v4.client.publishAsync('r/shared', 'by 4', { qos: 1, retain: true })
      const late5 = await b.mqtt({ clientId: 'late5' })
      await late5.client.subscribeAsync('r/shared', { qos: 1 })
      const replaced = await late5.inbox.waitFor('by 4')
      assert.equal(replaced.packet.properties?.contentType, undefined, 'the 3.1.1 message replaced the v5 one, properties and all')
      await v4.client.publishAsync('r/shared', '', { qos: 1, retain: true })
      const late5b = await b.mqtt({ clientId: 'late5b' })
      await late5b.client.subscribeAsync('r/shared', { qos: 1 })
      await fence(b, 'r/shared', late5b.inbox)
      assert.deepEqual(late5b.inbox.messages.map((m) => m.payload), ['fence'])
    })
  })
})

describe('MQTT 5 <-> 3.1.1 wills', () => {
  test("a v5 client's will (with properties) reaches a 3.1.1 subscriber when the v5 client drops", { timeout: TEST_TIMEOUT }, async () => {
    // MQTT 5 [MQTT-3.1.2-8]: the will is published when the connection closes without DISCONNECT 0x00
    await withV5Broker({}, async (b) => {
      const v4 = await b.mqtt({ clientId: 'v4', protocolVersion: 4 })
      await v4.client.subscribeAsync('w/#', { qos: 1 })
      const { raw } = await b.rawConnect({
        clientId: 'dies5',
        will: {
          topic: 'w/dies5',
          payload: Buffer.from('v5 gone'),
          qos: 1,
          retain: false,
          properties: { contentType: 'text/plain', userProperties: [['why', 'crash']], messageExpiryInterval: 30 },
        },
      })
      const left = gone(b, 'dies5')
      raw.destroy()
      await left
      const got = await v4.inbox.waitFor('v5 gone')
      assert.equal(got.topic, 'w/dies5')
      assert.equal(got.packet.qos, 1)
      assert.equal(got.packet.properties, undefined)
    })
  })

  test("a 3.1.1 client's will reaches a v5 subscriber when the 3.1.1 client drops", { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const v5 = await b.mqtt({ clientId: 'v5' })
      await v5.client.subscribeAsync('w/#', { qos: 2 })
      const { raw } = await b.rawConnect({ clientId: 'dies4', will: { topic: 'w/dies4', payload: Buffer.from('v4 gone'), qos: 2, retain: false } }, 4)
      const left = gone(b, 'dies4')
      raw.destroy()
      await left
      const got = await v5.inbox.waitFor('v4 gone')
      assert.equal(got.topic, 'w/dies4')
      assert.equal(got.packet.qos, 2)
      assert.equal(got.packet.properties?.userProperties, undefined)
    })
  })

  test("a v5 subscriber sees a v5 will's properties", { timeout: TEST_TIMEOUT }, async () => {
    // Will properties (section 3.1.3.2) are sent with the will as PUBLISH properties
    await withV5Broker({}, async (b) => {
      const v5 = await b.mqtt({ clientId: 'v5' })
      await v5.client.subscribeAsync('w/#', { qos: 1 })
      const { raw } = await b.rawConnect({
        clientId: 'dies5',
        will: {
          topic: 'w/dies5',
          payload: Buffer.from('v5 gone'),
          qos: 1,
          retain: false,
          properties: { contentType: 'text/plain', userProperties: [['why', 'crash']], correlationData: Buffer.from('cd') },
        },
      })
      const left = gone(b, 'dies5')
      raw.destroy()
      await left
      const got = await v5.inbox.waitFor('v5 gone')
      assert.equal(got.packet.properties?.contentType, 'text/plain')
      assert.deepEqual({ ...got.packet.properties?.userProperties }, { why: 'crash' })
      assert.deepEqual(got.packet.properties?.correlationData, Buffer.from('cd'))
    })
  })

  test('retained wills cross versions: a later subscriber of the other version gets each with RETAIN 1', { timeout: TEST_TIMEOUT }, async () => {
    // MQTT 5 [MQTT-3.1.2-15] a will with Will Retain 1 is published as a retained message
    await withV5Broker({}, async (b) => {
      const { raw: r5 } = await b.rawConnect({ clientId: 'dies5', will: { topic: 'w/r5', payload: Buffer.from('retained will 5'), qos: 1, retain: true } })
      const { raw: r4 } = await b.rawConnect({ clientId: 'dies4', will: { topic: 'w/r4', payload: Buffer.from('retained will 4'), qos: 1, retain: true } }, 4)
      const left = Promise.all([gone(b, 'dies5'), gone(b, 'dies4')])
      r5.destroy()
      r4.destroy()
      await left
      const v4 = await b.mqtt({ clientId: 'late4', protocolVersion: 4 })
      await v4.client.subscribeAsync('w/r5', { qos: 1 })
      const at4 = await v4.inbox.waitFor('retained will 5')
      assert.equal(at4.packet.retain, true)
      const v5 = await b.mqtt({ clientId: 'late5' })
      await v5.client.subscribeAsync('w/r4', { qos: 1 })
      const at5 = await v5.inbox.waitFor('retained will 4')
      assert.equal(at5.packet.retain, true)
    })
  })
})
