/** Reason strings on acknowledgements (problem information), and expired retained messages leaving storage. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryPersistence } from '../../src/index.js'
import { mockClock, storedRetained, TEST_TIMEOUT, withV5Broker } from '../helpers/index.js'

const authorizeSubscribe = (_c: unknown, s: { topicFilter: string }): boolean => s.topicFilter !== 'test/nosubscribe'

test('refusals on SUBACK, PUBACK and UNSUBACK carry a reason string; Request Problem Information 0 turns them off', { timeout: TEST_TIMEOUT }, async () => {
  await withV5Broker({ authorizeSubscribe, authorizePublish: (_c, m) => m.topic !== 'forbidden' }, async (b) => {
    const { raw } = await b.rawConnect({ clientId: 'curious' })
    const suback = await raw.subscribe([{ topicFilter: 'test/nosubscribe', qos: 0 }, { topicFilter: 'ok', qos: 0 }])
    assert.deepEqual(suback.reasonCodes, [0x80, 0])
    assert.equal(suback.properties?.reasonString, 'refused')
    raw.publish('forbidden', 'x', 1, { packetId: 5 })
    const puback = await raw.next('puback')
    assert.equal(puback.reasonCode, 0x87)
    assert.equal(puback.properties?.reasonString, 'not authorized')
    raw.send({ type: 'unsubscribe', packetId: 6, topicFilters: ['never'] })
    const unsuback = await raw.next('unsuback')
    assert.deepEqual(unsuback.reasonCodes, [0x11])
    assert.equal(unsuback.properties?.reasonString, 'no such subscription')

    // [MQTT-3.1.2-29] with Request Problem Information 0: no reason strings on acks
    const { raw: quiet } = await b.rawConnect({ clientId: 'quiet', properties: { requestProblemInformation: 0 } })
    const quietSuback = await quiet.subscribe([{ topicFilter: 'test/nosubscribe', qos: 0 }])
    assert.deepEqual(quietSuback.reasonCodes, [0x80])
    assert.equal(quietSuback.properties?.reasonString, undefined)
    quiet.publish('forbidden', 'x', 1, { packetId: 7 })
    const quietPuback = await quiet.next('puback')
    assert.equal(quietPuback.reasonCode, 0x87)
    assert.equal(quietPuback.properties?.reasonString, undefined)
  })
})

test('an expired retained message is not sent and leaves storage', { timeout: TEST_TIMEOUT }, async (t) => {
  const clock = mockClock(t) // the broker's clock: the message ages only as the test says
  const persistence = new MemoryPersistence()
  await withV5Broker({ persistence }, async (b) => {
    const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
    pub.publish('short/lived', 'soon gone', 1, { packetId: 1, retain: true, properties: { messageExpiryInterval: 1 } })
    await pub.next('puback')
    assert.equal((await storedRetained(persistence, 'short/')).length, 1)
    clock.tick(1200)
    const { raw: sub } = await b.rawConnect({ clientId: 'late' })
    await sub.subscribe([{ topicFilter: 'short/#', qos: 1 }])
    // The fence: retained messages (from this synchronous adapter) follow the SUBACK at once.
    await sub.ping()
    assert.equal(sub.inbox.filter((p) => p.type === 'publish').length, 0)
    assert.equal((await storedRetained(persistence, 'short/')).length, 0)
  })
})
