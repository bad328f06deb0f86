/**
 * Keep alive counts the client's silence, not the broker's: while the broker has stopped reading
 * a connection (waiting for a slow hook, or for its write buffer to drain), the client's packets
 * wait unread in the kernel, so the keep-alive clock stops [MQTT-3.1.2-24].
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { deferred, mockClock, RawMqtt, startBroker } from '../helpers/index.js'

test('a slow authorizePublish does not let keep alive disconnect the client that waits for it', async (t) => {
  const clock = mockClock(t)
  const asked = deferred<void>()
  const answer = deferred<boolean>()
  const b = await startBroker({
    authorizePublish: (_client, message) => {
      if (message.topic !== 'slow') return true
      asked.resolve()
      return answer.promise
    },
  })
  try {
    const client = await RawMqtt.open(b.port, 4)
    await client.connect({ clientId: 'patient', keepAlive: 1 })
    client.publish('slow', 'x', 1, 1)
    await asked.promise
    // The client keeps pinging, but the broker is not reading it: its PINGREQs wait.
    for (let i = 0; i < 10; i++) {
      client.send({ type: 'pingreq' })
      clock.tick(500)
    }
    assert.equal(client.closed, false)
    assert.equal(b.broker.getClient('patient')?.connected, true, 'still connected after 5 s of mocked time with the broker not reading')
    answer.resolve(true)
    await client.take('puback')
    await client.until(() => client.pending().filter((p) => p.type === 'pingresp').length === 10, undefined, 'the 10 PINGRESP')
    // Reading again, the clock runs again: silence for 1.5 x keep alive still ends the connection.
    const gone = new Promise<string>((resolve) => b.broker.on('clientDisconnect', (_c, reason) => resolve(reason)))
    clock.tick(1500)
    assert.equal(await gone, 'keep-alive-timeout')
  } finally {
    await b.close()
  }
})
