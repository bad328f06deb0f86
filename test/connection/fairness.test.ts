/**
 * One busy client must not hold the event loop: a connection processes a bounded number of
 * bytes, then lets the loop turn (timers, keep-alives, other clients) before reading on.
 */
import assert from 'node:assert/strict'
import { Duplex, PassThrough } from 'node:stream'
import { test } from 'node:test'
import { Broker } from '../../src/index.js'
import { connect, nextTurn, publish, until } from '../helpers/index.js'

test('a burst from one client is processed across event-loop turns, and all of it is delivered', async () => {
  const broker = new Broker()
  try {
    let delivered = 0
    await broker.subscribe('burst/+', () => {
      delivered++
    })
    const toBroker = new PassThrough()
    const fromBroker = new PassThrough()
    broker.handle(Duplex.from({ readable: toBroker, writable: fromBroker }))
    const connack = new Promise<Buffer>((resolve) => fromBroker.once('data', resolve))
    toBroker.write(connect({ clientId: 'burst' }))
    assert.equal((await connack)[0], 0x20)

    // 400 KiB of QoS 0 PUBLISH packets, written in one go.
    const chunks = 100
    const perChunk = 200
    const onePublish = publish('burst/a', Buffer.alloc(8))
    const chunk = Buffer.concat(Array.from({ length: perChunk }, () => onePublish))
    for (let i = 0; i < chunks; i++) toBroker.write(chunk)

    await nextTurn()
    assert.ok(delivered > 0, 'the burst started')
    assert.ok(delivered < chunks * perChunk, `the whole burst (${delivered} messages) was processed before the loop could turn`)

    await until(() => delivered >= chunks * perChunk, undefined, () => `the whole burst delivered (${delivered} so far)`)
    assert.equal(delivered, chunks * perChunk)
  } finally {
    await broker.close()
  }
})
