/**
 * Bans by client identifier and user name (`broker.ban`, `unban`, `bans`): CONNECT refused with
 * CONNACK 0x8A (MQTT 5) or 5 (3.1.1), connected clients the ban matches disconnected (MQTT 5:
 * DISCONNECT 0x98), expiry, and lifting. Address bans are tested with the rest of protection.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ReasonCode } from '../../src/protocol/reason-codes.js'
import { connectPacket, disconnected, hex, startBroker, withBroker } from '../helpers/index.js'

describe('bans', { timeout: 20_000 }, () => {
  test('a banned client identifier is refused: MQTT 5 CONNACK 0x8A (Banned), 3.1.1 return code 5; others connect', async () => {
    await withBroker({}, async (b) => {
      b.broker.ban({ clientId: 'evil', reason: 'abuse' })
      const v5 = await b.raw(5)
      const connack5 = await v5.connect({ clientId: 'evil' })
      assert.equal(hex(connack5.returnCode), hex(ReasonCode.Banned))
      assert.equal(hex(connack5.returnCode), hex(0x8a))
      await v5.waitClosed()
      const v4 = await b.raw(4)
      assert.equal((await v4.connect({ clientId: 'evil' })).returnCode, 5)
      await v4.waitClosed()
      // Another identifier is not concerned.
      await b.rawConnect({ clientId: 'good' }, 4)
      const s = b.broker.stats()
      assert.equal(s.connects['138'], 1)
      assert.equal(s.connects['5'], 1)
      assert.equal(s.denied.connect, 2)
    })
  })

  test('a banned user name is refused whatever the client identifier', async () => {
    await withBroker({}, async (b) => {
      const refusals: number[] = []
      b.broker.on('connectRefused', (r) => refusals.push(r.reasonCode))
      b.broker.ban({ username: 'mallory' })
      for (const clientId of ['m-1', 'm-2']) {
        const v5 = await b.raw(5)
        assert.equal(hex((await v5.connect({ clientId, username: 'mallory' })).returnCode), hex(0x8a), clientId)
        await v5.waitClosed()
      }
      const v4 = await b.raw(4)
      assert.equal((await v4.connect({ clientId: 'm-3', username: 'mallory' })).returnCode, 5)
      assert.deepEqual(refusals, [0x8a, 0x8a, 5])
      // The same client identifier with another user name connects.
      await b.rawConnect({ clientId: 'm-1', username: 'alice' }, 4)
    })
  })

  test('a connected client matching a new ban is disconnected: MQTT 5 DISCONNECT 0x98; 3.1.1 closed; by user name too', async () => {
    await withBroker({}, async (b) => {
      const victim5 = await b.raw(5)
      assert.equal((await victim5.connect({ clientId: 'victim-5' })).returnCode, 0)
      const { raw: victim4 } = await b.rawConnect({ clientId: 'victim-4' }, 4)
      const byName = await b.raw(5)
      assert.equal((await byName.connect({ clientId: 'named', username: 'eve' })).returnCode, 0)
      const bystander = await b.raw(5)
      assert.equal((await bystander.connect({ clientId: 'bystander', username: 'bob' })).returnCode, 0)

      const gone4 = disconnected(b, 'victim-4')
      b.broker.ban({ clientId: 'victim-5' })
      await victim5.expectDisconnect(ReasonCode.AdministrativeAction)
      b.broker.ban({ clientId: 'victim-4' })
      await victim4.waitClosed()
      assert.equal((await gone4)[1], 'closed-by-host')
      b.broker.ban({ username: 'eve' })
      await byName.expectDisconnect(0x98)

      // The bystander is untouched: it is still served.
      await bystander.ping()
      assert.equal(bystander.closed, false)
      assert.deepEqual(b.broker.clients.map((c) => c.id), ['bystander'])
      // And the banned ones cannot come back.
      const again = await b.raw(5)
      assert.equal(hex((await again.connect({ clientId: 'victim-5' })).returnCode), hex(0x8a))
    })
  })

  test('a ban whose until has passed is not in force: the client connects, bans() does not list it', async () => {
    await withBroker({}, async (b) => {
      b.broker.ban({ clientId: 'old', until: Date.now() - 1_000 })
      assert.deepEqual(b.broker.bans(), [])
      const { connack } = await b.rawConnect({ clientId: 'old' }, 4)
      assert.equal(connack.returnCode, 0)
      // A ban until a future time is in force.
      b.broker.ban({ clientId: 'future', until: Date.now() + 60_000 })
      const v4 = await b.raw(4)
      assert.equal((await v4.connect({ clientId: 'future' })).returnCode, 5)
    })
  })

  test('a ban already expired when given does not disconnect a connected client it names', async () => {
    await withBroker({}, async (b) => {
      const raw = await b.raw(5)
      assert.equal((await raw.connect({ clientId: 'expired-ban' })).returnCode, 0)
      b.broker.ban({ clientId: 'expired-ban', until: Date.now() - 1_000 })
      // The PINGRESP comes after anything the ban made the broker send.
      await raw.ping()
      assert.equal(raw.closed, false, `disconnected by a ban not in force: ${raw.describe()}`)
      assert.deepEqual(raw.pending(), [])
    })
  })

  test('unban lifts the ban: the client connects again; unban returns whether there was one', async () => {
    await withBroker({}, async (b) => {
      b.broker.ban({ clientId: 'pardoned' })
      const refused = await b.raw(4)
      assert.equal((await refused.connect({ clientId: 'pardoned' })).returnCode, 5)
      assert.equal(b.broker.unban({ clientId: 'pardoned' }), true)
      assert.equal(b.broker.unban({ clientId: 'pardoned' }), false)
      const { connack } = await b.rawConnect({ clientId: 'pardoned' }, 4)
      assert.equal(connack.returnCode, 0)
      b.broker.ban({ username: 'u' })
      assert.equal(b.broker.unban({ username: 'u' }), true)
      assert.deepEqual(b.broker.bans(), [])
    })
  })

  test('bans() lists the bans in force, with their fields; a repeated ban replaces the earlier one', async () => {
    await withBroker({}, async (b) => {
      const until = Date.now() + 60_000
      b.broker.ban({ clientId: 'a', reason: 'spam' })
      b.broker.ban({ username: 'u', until })
      b.broker.ban({ clientId: 'a', reason: 'spam again' })
      const list = b.broker.bans()
      assert.equal(list.length, 2)
      assert.deepEqual(list.find((x) => x.clientId === 'a'), { clientId: 'a', reason: 'spam again' })
      assert.deepEqual(list.find((x) => x.username === 'u'), { username: 'u', until })
      // A copy: changing it changes nothing in force.
      ;(list[0] as { clientId?: string }).clientId = 'changed'
      assert.ok(b.broker.bans().some((x) => x.clientId === 'a'))
      assert.throws(() => b.broker.ban({}), TypeError, 'a ban must name something')
    })
  })

  test('a ban reaches a client still in its CONNECT handshake (an authenticate hook deciding): it never gets in', async () => {
    let release: () => void = () => {}
    const deciding = new Promise<void>((resolve) => (release = resolve))
    let asked: () => void = () => {}
    const askedOnce = new Promise<void>((resolve) => (asked = resolve))
    const authenticate = async (): Promise<boolean> => {
      asked()
      await deciding
      return true
    }
    const b = await startBroker({ authenticate })
    try {
      const raw = await b.raw(5)
      raw.send(connectPacket({ clientId: 'pending', protocolVersion: 5 }))
      await askedOnce
      b.broker.ban({ clientId: 'pending' })
      release()
      await raw.waitClosed()
      assert.equal(raw.pending().some((p) => p.type === 'connack' && p.returnCode === 0), false, `no CONNACK 0: ${raw.describe()}`)
      assert.equal(b.broker.getClient('pending'), undefined)
    } finally {
      await b.close()
    }
  })
})
