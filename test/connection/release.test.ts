/**
 * A closed connection is garbage as soon as its stream closes, even while something still holds
 * the stream (Node's own timers, a host's reference, the broker's destroy timer). After a flood
 * to 10,000 subscribers that all leave at once, anything less kept every connection's session and
 * buffers alive for a second.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Client } from '../../src/index.js'
import { once, startBroker, until } from '../helpers/index.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

test('a closed connection is not kept alive by its stream', async () => {
  const b = await startBroker()
  try {
    let connection: WeakRef<Client> | undefined
    b.broker.on('clientConnect', (client) => {
      connection = new WeakRef(client)
    })
    const { raw, brokerSide } = b.rawInMemory()
    const connack = await raw.connect({ clientId: 'released', cleanSession: true, keepAlive: 0 })
    assert.equal(connack.returnCode, 0)
    await raw.subscribe('release/t', 0)
    assert.ok(connection?.deref() !== undefined)

    const closed = once(brokerSide, 'close')
    // Not `once`: its promise would keep the event's client.
    let disconnected = false
    b.broker.once('clientDisconnect', () => {
      disconnected = true
    })
    // The client closes its side, as a TCP client's FIN.
    raw.stream.end()
    await closed
    await until(() => disconnected, undefined, 'clientDisconnect')
    // The test holds the broker's side of the stream, as a host or a pending timer may.
    gc()
    assert.equal(connection?.deref(), undefined, 'the connection is collected while its stream is still referenced')
    assert.equal(brokerSide.destroyed, true)
  } finally {
    await b.close()
  }
})
