/** limits.maxPublishRate: a client publishing faster than allowed is disconnected (MQTT 5: 0x96). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { Packet } from '../../src/protocol/packets.js'
import { delay, startBroker } from '../helpers.js'

test('a client over limits.maxPublishRate gets DISCONNECT 0x96; one within it is served', async () => {
  const b = await startBroker({ limits: { maxPublishRate: 20 } })
  try {
    const publish = (i: number): Buffer => encodePacket({ type: 'publish', topic: 'rate', payload: Buffer.from(String(i)), qos: 1, retain: false, dup: false, packetId: i + 1 }, 5)
    const open = async (clientId: string): Promise<{ received: Packet[]; socket: import('node:net').Socket; closed: () => boolean }> => {
      const raw = await b.raw()
      const received: Packet[] = []
      const decoder = new PacketDecoder((p) => received.push(p))
      decoder.protocolVersion = 5
      raw.socket.removeAllListeners('data')
      raw.socket.on('data', (chunk: Buffer) => decoder.push(chunk))
      raw.socket.write(encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId }, 5))
      return { received, socket: raw.socket, closed: () => raw.closed }
    }
    const calm = await open('calm')
    for (let i = 0; i < 10; i++) calm.socket.write(publish(i))
    const flood = await open('flood')
    for (let i = 0; i < 40; i++) flood.socket.write(publish(i))
    const deadline = Date.now() + 3000
    while (!flood.received.some((p) => p.type === 'disconnect') && Date.now() < deadline) await delay(10)
    const disconnect = flood.received.find((p) => p.type === 'disconnect')
    assert.equal(disconnect?.type === 'disconnect' ? disconnect.reasonCode : undefined, 0x96)
    // Up to one second's worth (20) was accepted before the cut.
    assert.equal(flood.received.filter((p) => p.type === 'puback').length, 20)
    while (calm.received.filter((p) => p.type === 'puback').length < 10 && Date.now() < deadline) await delay(10)
    assert.equal(calm.received.filter((p) => p.type === 'puback').length, 10)
    assert.ok(!calm.received.some((p) => p.type === 'disconnect'))
    calm.socket.destroy()
  } finally {
    await b.close()
  }
})
