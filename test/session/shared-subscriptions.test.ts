/** Shared subscriptions ('$share/{ShareName}/{filter}'), for MQTT 5 and 3.1.1 clients. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { encodePacket } from '../../src/protocol/encoder.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import type { Packet } from '../../src/protocol/packets.js'
import { delay, startBroker, type TestBroker } from '../helpers.js'

function collect(client: MqttClient): string[] {
  const got: string[] = []
  client.on('message', (_topic, payload) => got.push(payload.toString()))
  return got
}

async function until(predicate: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await delay(10)
  }
}

for (const protocolVersion of [5, 4] as const) {
  test(`protocol ${protocolVersion}: each message goes to one member of the group, round-robin; plain subscribers get all`, async () => {
    const b = await startBroker()
    try {
      const m1 = await b.connect({ clientId: `m1-${protocolVersion}`, protocolVersion })
      const m2 = await b.connect({ clientId: `m2-${protocolVersion}`, protocolVersion })
      const plain = await b.connect({ clientId: `plain-${protocolVersion}`, protocolVersion })
      const [got1, got2, gotPlain] = [collect(m1), collect(m2), collect(plain)]
      await m1.subscribeAsync('$share/workers/jobs/+', { qos: 1 })
      await m2.subscribeAsync('$share/workers/jobs/+', { qos: 1 })
      await plain.subscribeAsync('jobs/#', { qos: 1 })
      const pub = await b.connect({ clientId: `pub-${protocolVersion}`, protocolVersion })
      for (let i = 0; i < 10; i++) await pub.publishAsync('jobs/a', `job ${i}`, { qos: 1 })
      await until(() => got1.length + got2.length === 10 && gotPlain.length === 10, 'deliveries')
      assert.equal(got1.length, 5)
      assert.equal(got2.length, 5)
      assert.deepEqual([...got1, ...got2].sort(), gotPlain.slice().sort())
      await delay(50)
      assert.equal(got1.length + got2.length, 10, 'each message went to exactly one member')
    } finally {
      await b.close()
    }
  })
}

test('retained messages are not sent on a shared subscription', async () => {
  const b = await startBroker()
  try {
    await b.broker.publish({ topic: 'state/x', payload: 'kept', retain: true })
    const member = await b.connect({ clientId: 'member', protocolVersion: 5 })
    const got = collect(member)
    await member.subscribeAsync('$share/g/state/+')
    const pub = await b.connect({ clientId: 'pub' })
    await pub.publishAsync('state/x', 'live')
    await until(() => got.length > 0, 'the live message')
    assert.deepEqual(got, ['live'])
  } finally {
    await b.close()
  }
})

test('after leaving the group a member gets nothing more; the other gets everything', async () => {
  const b = await startBroker()
  try {
    const m1 = await b.connect({ clientId: 'leaver', protocolVersion: 5 })
    const m2 = await b.connect({ clientId: 'stayer', protocolVersion: 5 })
    const [got1, got2] = [collect(m1), collect(m2)]
    await m1.subscribeAsync('$share/g/t')
    await m2.subscribeAsync('$share/g/t')
    await m1.unsubscribeAsync('$share/g/t')
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 4; i++) await pub.publishAsync('t', `${i}`, { qos: 1 })
    await until(() => got2.length === 4, 'all four to the remaining member')
    assert.deepEqual(got1, [])
  } finally {
    await b.close()
  }
})

test("QoS 1 messages a member had not acknowledged go to another member when its session ends", async () => {
  const b = await startBroker()
  try {
    const other = await b.connect({ clientId: 'other', protocolVersion: 5 })
    const gotOther = collect(other)
    await other.subscribeAsync('$share/g/work', { qos: 1 })
    // A raw member that never acknowledges.
    const raw = await rawMember(b, 'silent')
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 6; i++) await pub.publishAsync('work', `w${i}`, { qos: 1 })
    await until(() => raw.received.filter((p) => p.type === 'publish').length === 3 && gotOther.length === 3, 'a first round-robin split')
    const unacked = raw.received.flatMap((p) => (p.type === 'publish' ? [p.payload.toString()] : []))
    raw.end()
    await until(() => gotOther.length === 6, 'the silent member\'s messages redelivered')
    assert.deepEqual(gotOther.slice(3).sort(), unacked.sort())
  } finally {
    await b.close()
  }
})

test('invalid share names are refused per filter (0x8F for MQTT 5)', async () => {
  const b = await startBroker()
  try {
    const raw = await rawMember(b, 'bad-names', ['$share//t', '$share/a+b/t', '$share/g', '$share/ok/t'])
    const suback = raw.received.find((p) => p.type === 'suback')
    assert.deepEqual(suback?.type === 'suback' ? suback.reasonCodes : undefined, [0x8f, 0x8f, 0x8f, 1])
    raw.end()
  } finally {
    await b.close()
  }
})

/** A raw MQTT 5 client subscribed to `filters` at QoS 1 that never acknowledges anything. */
async function rawMember(b: TestBroker, clientId: string, filters = ['$share/g/work']): Promise<{ received: Packet[]; end(): void }> {
  const socket = (await b.raw()).socket
  const received: Packet[] = []
  const decoder = new PacketDecoder((p) => received.push(p))
  decoder.protocolVersion = 5
  socket.removeAllListeners('data')
  socket.on('data', (chunk: Buffer) => decoder.push(chunk))
  socket.write(encodePacket({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId }, 5))
  socket.write(encodePacket({ type: 'subscribe', packetId: 1, subscriptions: filters.map((topicFilter) => ({ topicFilter, qos: 1 as const })) }, 5))
  await until(() => received.some((p) => p.type === 'suback'), 'SUBACK')
  return { received, end: () => socket.destroy() }
}
