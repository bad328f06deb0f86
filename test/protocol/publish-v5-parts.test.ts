/**
 * encodePublishV5 writes a PUBLISH from the message's properties encoded once plus one
 * subscriber's identifiers and alias. Decoded, it must be the packet encodePublish makes from the
 * whole properties object: same topic, flags, payload, and properties (user properties in order).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePropertyValues, encodePublish, encodePublishV5 } from '../../src/protocol/encoder.js'
import type { Packet, Properties, PublishPacket, QoS } from '../../src/protocol/packets.js'

function decode(bytes: Buffer): PublishPacket {
  const packets: Packet[] = []
  const decoder = new PacketDecoder((p) => {
    packets.push(p)
  })
  decoder.protocolVersion = 5
  decoder.push(bytes)
  assert.equal(packets.length, 1)
  const packet = packets[0] as PublishPacket
  assert.equal(packet.type, 'publish')
  return packet
}

const messageProperties: Properties[] = [
  {},
  { messageExpiryInterval: 300 },
  {
    payloadFormatIndicator: 1,
    messageExpiryInterval: 42,
    contentType: 'text/plain; charset=ü',
    responseTopic: 'reply/here',
    correlationData: Buffer.from([0, 1, 2, 255]),
    userProperties: [['a', '1'], ['b', 'two'], ['a', '3']],
  },
]
const subscriberParts: Array<{ ids?: number[]; alias?: number; sendTopic?: boolean }> = [
  {},
  { ids: [1] },
  { ids: [7, 268_435_455] },
  { alias: 3, sendTopic: true },
  { ids: [128], alias: 65_535, sendTopic: false },
]

test('encodePublishV5 decodes to the packet encodePublish makes from the whole properties', () => {
  const payload = Buffer.from('payload ✓')
  for (const props of messageProperties) {
    const common = encodePropertyValues(props)
    for (const part of subscriberParts) {
      for (const [qos, retain] of [[0, false], [1, true], [2, false]] as Array<[QoS, boolean]>) {
        const topic = part.alias !== undefined && part.sendTopic === false ? '' : 'sensors/ü/1'
        const whole: Properties = { ...props }
        if (part.ids !== undefined) whole.subscriptionIdentifier = part.ids
        if (part.alias !== undefined) whole.topicAlias = part.alias
        const expected = decode(encodePublish({ type: 'publish', topic, payload, qos, retain, dup: false, packetId: qos > 0 ? 1 : 0, properties: whole }, 5))
        const actual = decode(encodePublishV5(topic, payload, qos, retain, common, part.ids, part.alias))
        assert.deepEqual(actual, expected, `${JSON.stringify(props)} ${JSON.stringify(part)} q${qos}`)
      }
    }
  }
})
