/** MQTT 5 outbound topic aliases: the broker shortens repeated long topics for clients that allow it. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodePacket } from '../../src/protocol/encoder.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import type { Packet, PublishPacket } from '../../src/protocol/packets.js'
import { delay, startBroker } from '../helpers.js'

async function rawV5(port: number, connectProperties: Record<string, number>, received: Packet[]): Promise<import('node:net').Socket> {
  const net = await import('node:net')
  const socket = net.connect(port, '127.0.0.1')
  const decoder = new PacketDecoder((p) => received.push(p))
  decoder.protocolVersion = 5
  socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  socket.write(encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId: `alias-${Object.keys(connectProperties).length}`, properties: connectProperties }, 5))
  socket.write(encodePacket({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'sensors/#', qos: 0 }] }, 5))
  const deadline = Date.now() + 3000
  while (!received.some((p) => p.type === 'suback')) {
    if (Date.now() > deadline) throw new Error('no SUBACK')
    await delay(5)
  }
  return socket
}

test('a client with Topic Alias Maximum gets the topic once, then only the alias', async () => {
  const b = await startBroker()
  try {
    const received: Packet[] = []
    const socket = await rawV5(b.port, { topicAliasMaximum: 5 }, received)
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 3; i++) await pub.publishAsync('sensors/kitchen/temperature', `${i}`)
    const deadline = Date.now() + 3000
    const publishes = (): PublishPacket[] => received.filter((p): p is PublishPacket => p.type === 'publish')
    while (publishes().length < 3 && Date.now() < deadline) await delay(5)
    const [first, second, third] = publishes()
    // [MQTT-3.3.2-10] [MQTT-3.3.2-12] the first carries topic and alias, later ones the alias alone
    assert.equal(first?.topic, 'sensors/kitchen/temperature')
    assert.equal(first?.properties?.topicAlias, 1)
    assert.equal(second?.topic, '')
    assert.equal(second?.properties?.topicAlias, 1)
    assert.equal(third?.payload.toString(), '2')
    socket.destroy()
  } finally {
    await b.close()
  }
})

test('a client without Topic Alias Maximum never gets an alias', async () => {
  const b = await startBroker()
  try {
    const received: Packet[] = []
    const socket = await rawV5(b.port, {}, received)
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 2; i++) await pub.publishAsync('sensors/kitchen/temperature', `${i}`)
    const deadline = Date.now() + 3000
    while (received.filter((p) => p.type === 'publish').length < 2 && Date.now() < deadline) await delay(5)
    for (const p of received) {
      if (p.type !== 'publish') continue
      assert.equal(p.topic, 'sensors/kitchen/temperature')
      assert.equal(p.properties?.topicAlias, undefined)
    }
    socket.destroy()
  } finally {
    await b.close()
  }
})

test('short topics get aliases too, from 4 characters (an alias costs 3 bytes)', async () => {
  const b = await startBroker()
  try {
    const received: Packet[] = []
    const socket = await rawV5(b.port, { topicAliasMaximum: 2 }, received)
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 2; i++) await pub.publishAsync('sensors', `${i}`)
    const deadline = Date.now() + 3000
    while (received.filter((p) => p.type === 'publish').length < 2 && Date.now() < deadline) await delay(5)
    const publishes = received.filter((p): p is PublishPacket => p.type === 'publish')
    assert.equal(publishes[1]?.topic, '')
    assert.equal(publishes[1]?.properties?.topicAlias, 1)
    socket.destroy()
  } finally {
    await b.close()
  }
})
