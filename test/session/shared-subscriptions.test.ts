/** Shared subscriptions ('$share/{ShareName}/{filter}'), for MQTT 5 and 3.1.1 clients. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import type { SubackPacket } from '../../src/protocol/packets.js'
import { ping, startBroker, until, type RawMqtt, type TestBroker } from '../helpers/index.js'

function collect(client: MqttClient): string[] {
  const got: string[] = []
  client.on('message', (_topic, payload) => got.push(payload.toString()))
  return got
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
      await until(() => got1.length + got2.length === 10 && gotPlain.length === 10, undefined, 'deliveries')
      assert.equal(got1.length, 5)
      assert.equal(got2.length, 5)
      assert.deepEqual([...got1, ...got2].sort(), gotPlain.slice().sort())
      // The fence: anything more routed to a member was sent before its PINGRESP (QoS 1: emitted as read).
      await ping(m1)
      await ping(m2)
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
    await until(() => got.length > 0, undefined, 'the live message')
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
    await until(() => got2.length === 4, undefined, 'all four to the remaining member')
    await ping(m1)
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
    const { raw } = await rawMember(b, 'silent')
    const pub = await b.connect({ clientId: 'pub' })
    for (let i = 0; i < 6; i++) await pub.publishAsync('work', `w${i}`, { qos: 1 })
    await until(() => raw.publishes().length === 3 && gotOther.length === 3, undefined, 'a first round-robin split')
    const unacked = raw.publishes().map((p) => p.payload.toString())
    raw.destroy()
    await until(() => gotOther.length === 6, undefined, 'the silent member\'s messages redelivered')
    assert.deepEqual(gotOther.slice(3).sort(), unacked.sort())
  } finally {
    await b.close()
  }
})

test('invalid share names are refused per filter (0x8F for MQTT 5)', async () => {
  const b = await startBroker()
  try {
    const { raw, suback } = await rawMember(b, 'bad-names', ['$share//t', '$share/a+b/t', '$share/g', '$share/ok/t'])
    assert.deepEqual(suback.reasonCodes, [0x8f, 0x8f, 0x8f, 1])
    raw.destroy()
  } finally {
    await b.close()
  }
})

/** A raw MQTT 5 client subscribed to `filters` at QoS 1 that never acknowledges anything. */
async function rawMember(b: TestBroker, clientId: string, filters = ['$share/g/work']): Promise<{ raw: RawMqtt; suback: SubackPacket }> {
  const { raw } = await b.rawConnect({ clientId }, 5)
  const suback = await raw.subscribe(filters.map((topicFilter) => ({ topicFilter, qos: 1 as const })))
  return { raw, suback }
}
