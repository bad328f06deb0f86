/** How the decoder takes a stream: halting for flow control, and packets that arrive slowly. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { Packet } from '../../src/protocol/packets.js'

const publish = (n: number): Buffer =>
  encodePacket({ type: 'publish', topic: 't', payload: Buffer.from(String(n)), qos: 0, retain: false, dup: false, packetId: 0 }, 4)

test('onPacket returning false halts decoding; resume() continues in order, including chunks pushed meanwhile', () => {
  const seen: string[] = []
  let stopAt = 2
  const decoder = new PacketDecoder((p: Packet) => {
    if (p.type === 'publish') seen.push(p.payload.toString())
    return seen.length !== stopAt
  })
  decoder.push(Buffer.concat([publish(1), publish(2), publish(3), publish(4)]))
  assert.deepEqual(seen, ['1', '2'])
  decoder.push(publish(5))
  assert.deepEqual(seen, ['1', '2'], 'nothing is decoded while halted')
  stopAt = 4
  decoder.resume()
  assert.deepEqual(seen, ['1', '2', '3', '4'])
  stopAt = -1
  decoder.resume()
  assert.deepEqual(seen, ['1', '2', '3', '4', '5'])
})

test('a packet arriving a byte at a time holds memory in proportion to what arrived, not one buffer per byte', () => {
  const big = encodePacket({ type: 'publish', topic: 'big', payload: Buffer.alloc(1024 * 1024, 7), qos: 0, retain: false, dup: false, packetId: 0 }, 4)
  const packets: Packet[] = []
  const decoder = new PacketDecoder((p) => packets.push(p))
  for (let i = 0; i < 10_000; i++) decoder.push(big.subarray(i, i + 1))
  const held = (decoder as unknown as { partial: Buffer | null }).partial
  assert.ok(held !== null && held.length <= 32 * 1024, `holding ${held?.length} bytes after 10,000 bytes arrived`)
  decoder.push(big.subarray(10_000))
  assert.equal(packets.length, 1)
  const p = packets[0]
  assert.ok(p?.type === 'publish' && p.payload.equals(Buffer.alloc(1024 * 1024, 7)))
})
