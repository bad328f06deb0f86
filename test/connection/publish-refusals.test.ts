/**
 * Refused PUBLISHes. Topics under `$SYS/` are the broker's own: clients may not publish there
 * (refused like any unauthorized PUBLISH), the host application may (`broker.publish`). A hook's
 * refusal reaches an MQTT 5 client as a code its PUBACK may carry.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RawMqtt, withBroker } from '../helpers/index.js'

test('a 3.1.1 client publishing to $SYS/... is acknowledged but nothing is delivered [MQTT-3.3.5-2]', async () => {
  await withBroker({}, async (b) => {
    const watcher = await RawMqtt.open(b, 'watcher')
    await watcher.subscribe('$SYS/#', 1)
    const client = await RawMqtt.open(b, 'forger')
    client.publish('$SYS/broker/version', 'fake', 1, 1)
    await client.take('puback')
    client.publish('$SYS/broker/uptime', 'fake', 0)
    await client.ping()
    await b.broker.publish({ topic: '$SYS/broker/version', payload: 'real', qos: 1 })
    const real = await watcher.takePublish('real')
    watcher.send({ type: 'puback', packetId: real.packetId })
    assert.deepEqual(watcher.publishes().map((p) => p.payload.toString()), ['real'])
  })
})

test('an MQTT 5 client publishing to $SYS/... gets PUBACK 0x87 (not authorized)', async () => {
  await withBroker({}, async (b) => {
    const client = await RawMqtt.open(b.port)
    await client.connect({ clientId: 'forger5' })
    client.publish('$SYS/x', 'fake', 1, 7)
    const puback = await client.take('puback')
    assert.equal(puback.reasonCode, 0x87)
  })
})

test('a will on a $SYS/ topic is refused at CONNECT (3.1.1: CONNACK 5; MQTT 5: 0x87)', async () => {
  await withBroker({}, async (b) => {
    for (const protocolVersion of [4, 5] as const) {
      const client = await b.raw(protocolVersion)
      client.send({
        type: 'connect',
        protocolName: 'MQTT',
        protocolVersion,
        cleanSession: true,
        keepAlive: 0,
        clientId: `will-${protocolVersion}`,
        will: { topic: '$SYS/broker/clients/connected', payload: Buffer.from('0'), qos: 0, retain: false },
      })
      const connack = await client.next('connack')
      assert.equal(connack.returnCode, protocolVersion === 5 ? 0x87 : 5)
      await client.waitClosed()
    }
  })
})

test('authorizePublish answering a code PUBACK cannot carry (0x8F) refuses with 0x80 [MQTT-3.4.2-1]; one it can (0x97) is sent as is', async () => {
  await withBroker({ authorizePublish: (_client, message) => (message.topic === 'odd' ? 0x8f : 0x97) }, async (b) => {
    const client = await RawMqtt.open(b.port)
    await client.connect({ clientId: 'refused5' })
    client.publish('odd', 'x', 1, 1)
    assert.equal((await client.take('puback', (p) => p.packetId === 1)).reasonCode, 0x80)
    client.publish('quota', 'x', 1, 2)
    assert.equal((await client.take('puback', (p) => p.packetId === 2)).reasonCode, 0x97)
  })
})
