/**
 * A store that falls behind does not make the broker's memory grow without bound: past its bound
 * of uncommitted operations, the broker stops reading publishers until the store catches up.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodePacket } from '../../src/protocol/encoder.js'
import { GatedStore, nextTurn, startBroker, until } from '../helpers/index.js'

const FLOOD = 60_000

test('while commits are held, a publisher flooding a persistent session is no longer read past the bound; it resumes once they complete', { timeout: 60_000 }, async () => {
  const store = new GatedStore()
  const b = await startBroker({ persistence: store.adapter, limits: { maxQueued: 2 * FLOOD } })
  try {
    const { raw: keeper } = await b.rawConnect({ clientId: 'keeper', cleanSession: false })
    await keeper.subscribe('flood/#', 1)
    await keeper.drop(b, 'keeper')
    const { raw: pub } = await b.rawConnect({ clientId: 'flooder' })
    store.hold()
    const packets: Buffer[] = []
    for (let i = 1; i <= FLOOD; i++) packets.push(encodePacket({ type: 'publish', topic: 'flood/x', payload: Buffer.from(String(i)), qos: 1, retain: false, dup: false, packetId: i }, 4))
    packets.push(encodePacket({ type: 'pingreq' }, 4))
    pub.write(Buffer.concat(packets))
    await store.waiting()
    // Each message queued for the offline session is two operations (the message, its place in
    // the queue): the bound of 100,000 uncommitted operations is passed after 50,000 messages.
    const queued = (): number => b.broker.getSession('keeper')?.queued ?? 0
    await until(() => queued() > 50_000, 20_000, 'the flood to pass the bound')
    // Turns of the event loop in which an unpaused connection would read on (its budget is about
    // 10,000 packets per turn): a paused one reads nothing more.
    for (let i = 0; i < 40; i++) await nextTurn()
    assert.ok(queued() < FLOOD, `reading went on while the store was held: ${queued()} of ${FLOOD} queued`)
    assert.equal(pub.pending().some((p) => p.type === 'pingresp'), false)
    assert.equal(pub.pending().some((p) => p.type === 'puback'), false, 'nothing acknowledged before the commit')
    store.release()
    await pub.take('pingresp', () => true, 30_000)
    assert.equal(queued(), FLOOD)
    assert.equal(pub.pending().filter((p) => p.type === 'puback').length, FLOOD)
    assert.equal(b.broker.stats().messages.received[1], FLOOD, 'each PUBLISH counted once, those that waited for the store too')
  } finally {
    store.release()
    await b.close()
  }
})
