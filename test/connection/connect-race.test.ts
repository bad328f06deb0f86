/**
 * Two CONNECTs with one client identifier while an async `authenticate` decides: the newest
 * CONNECT wins [MQTT-3.1.4-3], also when the older one is decided last.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { AuthenticateRequest, DisconnectReason } from '../../src/index.js'
import { connect, deferred, RawMqtt, startBroker } from '../helpers/index.js'

test('an older CONNECT decided after a newer one with the same client id does not take the session over', async () => {
  const slowAsked = deferred<void>()
  const slowAnswer = deferred<boolean>()
  const b = await startBroker({
    authenticate: (request: AuthenticateRequest) => {
      if (request.username !== 'slow') return true
      slowAsked.resolve()
      return slowAnswer.promise
    },
  })
  const disconnects: Array<[string, DisconnectReason]> = []
  b.broker.on('clientDisconnect', (client, reason) => disconnects.push([client.id, reason]))
  try {
    // The first attempt stalls in authenticate ...
    const stale = new RawMqtt(await b.raw())
    stale.write(connect({ clientId: 'device', username: 'slow', password: Buffer.from('x') }))
    await slowAsked.promise
    // ... while the device reconnects and is accepted.
    const { peer: live } = await RawMqtt.connect(b, { clientId: 'device', username: 'fast' })
    assert.equal(b.broker.getClient('device')?.username, 'fast')
    // Now the stalled attempt is accepted by the hook: it is stale and must go, not the live one.
    slowAnswer.resolve(true)
    await stale.waitClosed()
    assert.deepEqual(
      stale.pending().filter((p) => p.type === 'connack' && p.returnCode === 0),
      [],
      'the stale CONNECT was not accepted',
    )
    live.send({ type: 'pingreq' })
    await live.next('pingresp')
    assert.equal(b.broker.getClient('device')?.username, 'fast', 'the live connection keeps the client id')
    assert.deepEqual(disconnects, [], 'nobody was taken over')
  } finally {
    await b.close()
  }
})

test('without a race, a new CONNECT takes over the connected client (MQTT 5: DISCONNECT 0x8E) [MQTT-3.1.4-3]', async () => {
  const b = await startBroker()
  try {
    const first = await b.connect({ clientId: 'twice', protocolVersion: 5 })
    const gone = new Promise<number | undefined>((resolve) => first.once('disconnect', (packet) => resolve(packet.reasonCode)))
    const { peer: second } = await RawMqtt.connect(b, { clientId: 'twice' })
    assert.equal(await gone, 0x8e)
    second.send({ type: 'pingreq' })
    await second.next('pingresp')
    assert.equal(b.broker.getClient('twice')?.protocolVersion, 4)
  } finally {
    await b.close()
  }
})
