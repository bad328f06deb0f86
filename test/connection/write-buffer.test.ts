/**
 * `limits.maxWriteBuffer` pauses reading a client whose answers pile up, and reading resumes once
 * they are flushed, whatever the limit: also below the stream's own high-water mark (16 KiB),
 * where the stream never emits 'drain'.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RawMqtt, startBroker } from '../helpers/index.js'

for (const maxWriteBuffer of [1024, 8 * 1024, 64 * 1024]) {
  test(`maxWriteBuffer ${maxWriteBuffer}: a delivery larger than the limit is sent, then the client is read again (PINGREQ answered)`, async () => {
    const b = await startBroker({ limits: { maxWriteBuffer } })
    try {
      const subscriber = await RawMqtt.open(b, 'reader')
      await subscriber.subscribe('big', 1)
      const publisher = await RawMqtt.open(b, 'writer')
      const payload = Buffer.alloc(10 * 1024, 7)
      publisher.publish('big', payload, 1, 1)
      await publisher.next('puback')
      const delivered = await subscriber.next('publish')
      assert.equal(delivered.payload.length, payload.length)
      subscriber.send({ type: 'puback', packetId: delivered.packetId })
      // The delivery put the subscriber's write buffer over the limit, so the broker paused
      // reading it; once the delivery left, its next packet must be read and answered.
      subscriber.send({ type: 'pingreq' })
      await subscriber.next('pingresp')
      // And the publisher, whose PUBACK went out over its own small buffer, is read too.
      publisher.send({ type: 'pingreq' })
      await publisher.next('pingresp')
    } finally {
      await b.close()
    }
  })
}
