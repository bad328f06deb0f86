/** Protection with an injected clock: bans, per-IP caps and rates at accept, flapping detection, and bounded maps. */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, test } from 'node:test'
import type { AcceptRequest } from '../../src/hooks/types.js'
import { Counters } from '../../src/metrics/counters.js'
import type { ProtectionOptions } from '../../src/options.js'
import { parseAddressBlock, peerAddress } from '../../src/protection/bans.js'
import { Protection } from '../../src/protection/protection.js'

/** A Protection on a clock the test moves by hand. */
function setup(options: ProtectionOptions = {}, start = 1_000_000): { p: Protection; counters: Counters; clock: { t: number } } {
  const clock = { t: start }
  const counters = new Counters()
  return { p: new Protection(options, counters, () => clock.t), counters, clock }
}

const from = (remoteAddress: string | undefined, transport = 'tcp'): AcceptRequest => ({ remoteAddress, remotePort: 50000, transport })

/** An EventEmitter standing in for a socket: `close()` emits 'close' as a socket does. */
class FakeSocket extends EventEmitter {
  close(): void {
    this.emit('close')
  }
}

describe('bans', () => {
  test('an address ban refuses that address at accept and counts it; other addresses pass', () => {
    const { p, counters } = setup({ bans: [{ address: '203.0.113.7' }] })
    assert.equal(p.admit(from('203.0.113.7'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('203.0.113.8'), new FakeSocket()), null)
    assert.equal(counters.socketsRefused.banned, 1)
    // Protection counts refusals only; socketsAccepted is for the caller, after the host's hook.
    assert.equal(counters.socketsAccepted, 0)
  })

  test('a CIDR ban covers its block, IPv4 and IPv6', () => {
    const { p } = setup({ bans: [{ address: '10.0.0.0/8' }, { address: '2001:db8::/32' }] })
    assert.equal(p.admit(from('10.255.1.2'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('11.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('2001:db8:1:2::99'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('2001:DB8::1'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('2001:db9::1'), new FakeSocket()), null)
  })

  test('an IPv4 ban matches the IPv4-mapped IPv6 form a dual-stack socket reports, and the other way round', () => {
    const { p } = setup({ bans: [{ address: '192.0.2.1' }, { address: '::ffff:198.51.100.0/120' }] })
    assert.equal(p.admit(from('::ffff:192.0.2.1'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('::FFFF:192.0.2.1'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('198.51.100.77'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('::ffff:198.51.100.77'), new FakeSocket()), 'banned')
    assert.equal(p.admit(from('::ffff:192.0.2.2'), new FakeSocket()), null)
  })

  test('an IPv6 address with a zone is matched without it', () => {
    const { p } = setup({ bans: [{ address: 'fe80::1' }] })
    assert.equal(p.admit(from('fe80::1%eth0'), new FakeSocket()), 'banned')
  })

  test('a ban expires at `until`: refused before, served from then on, and gone from list()', () => {
    const { p, clock } = setup()
    p.ban({ address: '203.0.113.0/24', until: clock.t + 1000, reason: 'abuse' })
    p.ban({ clientId: 'c1', until: clock.t + 2000 })
    assert.equal(p.admit(from('203.0.113.9'), new FakeSocket()), 'banned')
    assert.deepEqual(
      p.list().map((b) => b.address ?? b.clientId),
      ['203.0.113.0/24', 'c1'],
    )
    clock.t += 999
    assert.equal(p.admit(from('203.0.113.9'), new FakeSocket()), 'banned')
    clock.t += 1
    assert.equal(p.admit(from('203.0.113.9'), new FakeSocket()), null)
    assert.deepEqual(p.list(), [{ clientId: 'c1', until: clock.t + 1000 }])
    assert.ok(p.connectBan('c1', undefined))
    clock.t += 1000
    assert.equal(p.connectBan('c1', undefined), undefined)
    assert.deepEqual(p.list(), [])
    assert.equal(p.sizes().bans, 0)
  })

  test('connectBan finds client id and user name bans, not address bans', () => {
    const { p } = setup({ bans: [{ clientId: 'bad-client', reason: 'r1' }, { username: 'mallory' }, { address: '10.0.0.1' }] })
    assert.deepEqual(p.connectBan('bad-client', 'alice'), { clientId: 'bad-client', reason: 'r1' })
    assert.deepEqual(p.connectBan('good', 'mallory'), { username: 'mallory' })
    assert.equal(p.connectBan('good', undefined), undefined)
    assert.equal(p.connectBan('10.0.0.1', '10.0.0.1'), undefined)
  })

  test('unban removes the bans matching every field given, an address however written; list() returns copies', () => {
    const { p } = setup({ bans: [{ clientId: 'a' }, { username: 'u' }, { address: '10.0.0.1' }, { address: '2001:db8::/32' }] })
    assert.equal(p.unban({}), false)
    assert.equal(p.unban({ clientId: 'nobody' }), false)
    assert.equal(p.unban({ clientId: 'a', username: 'u' }), false, 'no ban names both')
    assert.equal(p.unban({ clientId: 'a' }), true)
    assert.deepEqual(p.list(), [{ username: 'u' }, { address: '10.0.0.1' }, { address: '2001:db8::/32' }])
    assert.equal(p.unban({ address: '::ffff:10.0.0.1' }), true)
    assert.equal(p.unban({ address: '2001:DB8:0::/32' }), true)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('2001:db8::5'), new FakeSocket()), null)
    assert.equal(p.unban({ address: 'not an address' }), false)
    const listed = p.list()
    listed[0]!.username = 'changed'
    assert.deepEqual(p.list(), [{ username: 'u' }])
  })

  test('a ban names exactly one of client id, user name and address', () => {
    const { p } = setup()
    assert.throws(() => p.ban({ clientId: 'a', address: '10.0.0.1' }), TypeError)
    assert.throws(() => p.ban({ clientId: 'a', username: 'u' }), TypeError)
    assert.throws(() => p.ban({}), TypeError)
    assert.deepEqual(p.list(), [])
  })

  test('a ban for the same client id, user name and address replaces the earlier one', () => {
    const { p, clock } = setup()
    p.ban({ clientId: 'x', until: clock.t + 10 })
    p.ban({ clientId: 'x', until: clock.t + 5000, reason: 'again' })
    p.ban({ address: '10.0.0.0/8' })
    p.ban({ address: '10.0.0.0/8', until: clock.t + 10 })
    assert.equal(p.list().length, 2)
    clock.t += 10
    assert.deepEqual(p.list(), [{ clientId: 'x', until: clock.t + 4990, reason: 'again' }])
    // The replaced address ban expired with its replacement's `until`.
    assert.equal(p.admit(from('10.1.1.1'), new FakeSocket()), null)
  })

  test('a ban naming nothing, or a bad address, throws a TypeError (from the options too)', () => {
    const { p } = setup()
    assert.throws(() => p.ban({ reason: 'nothing' }), TypeError)
    assert.throws(() => p.ban({ address: 'example.com' }), TypeError)
    assert.throws(() => p.ban({ address: '10.0.0.0/33' }), TypeError)
    assert.throws(() => p.ban({ address: '10.0.0.0/x' }), TypeError)
    assert.throws(() => setup({ bans: [{ address: '300.1.1.1' }] }), TypeError)
  })

  test('address parsing: canonical forms, mapped blocks folded to IPv4', () => {
    assert.equal(parseAddressBlock('2001:DB8:0::1').text, '2001:db8::1')
    assert.equal(parseAddressBlock('10.0.0.0/32').text, '10.0.0.0')
    assert.deepEqual(parseAddressBlock('::ffff:10.0.0.0/104'), { address: '10.0.0.0', family: 'ipv4', prefix: 8, text: '10.0.0.0/8' })
    assert.equal(peerAddress('/run/mqtt.sock'), undefined)
    assert.equal(peerAddress(undefined), undefined)
    assert.equal(peerAddress('::ffff:10.0.0.1'), '10.0.0.1')
  })
})

describe('per-IP limits', () => {
  test('the open-connection cap refuses at the limit and counts down when a socket closes, once per socket', () => {
    const { p, counters } = setup({ maxConnectionsPerIp: 2 })
    const a = new FakeSocket()
    const b = new FakeSocket()
    assert.equal(p.admit(from('10.0.0.1'), a), null)
    assert.equal(p.admit(from('::ffff:10.0.0.1'), b), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
    assert.equal(p.admit(from('10.0.0.2'), new FakeSocket()), null)
    assert.equal(counters.socketsRefused.per_ip_limit, 1)
    a.close()
    a.close() // a second 'close' must not free a second slot
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
    assert.equal(counters.socketsRefused.per_ip_limit, 2)
  })

  test('a refused socket is not counted open: closing it frees nothing', () => {
    const { p } = setup({ maxConnectionsPerIp: 1 })
    const served = new FakeSocket()
    const refused = new FakeSocket()
    assert.equal(p.admit(from('10.0.0.1'), served), null)
    assert.equal(p.admit(from('10.0.0.1'), refused), 'per_ip_limit')
    assert.equal(refused.listenerCount('close'), 0)
    refused.close()
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
  })

  test('the address map holds only addresses with open sockets', () => {
    const { p } = setup({ maxConnectionsPerIp: 5 })
    const sockets = Array.from({ length: 50 }, (_, i) => {
      const s = new FakeSocket()
      assert.equal(p.admit(from(`10.0.${i}.1`), s), null)
      return s
    })
    assert.equal(p.sizes().openAddresses, 50)
    for (const s of sockets) s.close()
    assert.equal(p.sizes().openAddresses, 0)
  })

  test('the connect rate allows a burst of one second, then refills at the rate', () => {
    const { p, clock, counters } = setup({ connectRatePerIp: 3 })
    for (let i = 0; i < 3; i++) assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate')
    assert.equal(p.admit(from('10.0.0.2'), new FakeSocket()), null, 'each address has its own bucket')
    clock.t += 333
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate', 'not quite one token yet')
    clock.t += 1
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate')
    clock.t += 10_000
    for (let i = 0; i < 3; i++) assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null, 'refilled to one second, no more')
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate')
    assert.equal(counters.socketsRefused.per_ip_rate, 4)
  })

  test('a rate below one per second still lets one connection through, then one per 1/rate seconds', () => {
    const { p, clock } = setup({ connectRatePerIp: 0.5 })
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate')
    clock.t += 1999
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_rate')
    clock.t += 1
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
  })

  test('checks run in order: ban, then open cap, then rate; a refusal by the cap takes no token', () => {
    const { p } = setup({ maxConnectionsPerIp: 1, connectRatePerIp: 2, bans: [{ address: '10.0.0.9' }] })
    assert.equal(p.admit(from('10.0.0.9'), new FakeSocket()), 'banned')
    const first = new FakeSocket()
    assert.equal(p.admit(from('10.0.0.1'), first), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
    first.close()
    // One token left of two: the refusals by the cap took none.
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'per_ip_limit')
  })

  test('rate buckets are swept once refilled, on the next call or sweep()', () => {
    const { p, clock } = setup({ connectRatePerIp: 10 })
    for (let i = 0; i < 100; i++) p.admit(from(`10.1.${i}.1`), new FakeSocket())
    assert.equal(p.sizes().rateBuckets, 100)
    clock.t += 999
    p.sweep()
    assert.equal(p.sizes().rateBuckets, 100, 'not refilled yet: kept')
    clock.t += 1
    p.admit(from('10.2.0.1'), new FakeSocket())
    assert.equal(p.sizes().rateBuckets, 1, 'only the new one is left')
    clock.t += 1000
    p.sweep()
    assert.equal(p.sizes().rateBuckets, 0)
  })

  test('unix sockets (a path, not an address) are never limited nor banned here', () => {
    const { p } = setup({ maxConnectionsPerIp: 1, connectRatePerIp: 1, bans: [{ address: '0.0.0.0/0' }, { address: '::/0' }] })
    for (let i = 0; i < 5; i++) assert.equal(p.admit(from('/run/culex.sock', 'unix'), new FakeSocket()), null)
    assert.equal(p.admit(from(undefined), new FakeSocket()), null)
    assert.equal(p.admit(from('10.0.0.1'), new FakeSocket()), 'banned')
  })

  test('no limits set: nothing is counted', () => {
    const { p } = setup()
    const s = new FakeSocket()
    assert.equal(p.admit(from('10.0.0.1'), s), null)
    assert.equal(s.listenerCount('close'), 0)
    assert.deepEqual(p.sizes(), { bans: 0, openAddresses: 0, rateBuckets: 0, flappingClients: 0 })
  })
})

describe('flapping', () => {
  test('off unless configured', () => {
    const { p } = setup()
    for (let i = 0; i < 100; i++) assert.equal(p.clientEnded('c', 'socket-closed'), undefined)
    assert.equal(p.sizes().flappingClients, 0)
  })

  test('more than maxDisconnects endings within windowMs ban the client id for banMs, and the ban is returned', () => {
    const { p, clock } = setup({ flapping: { maxDisconnects: 3, windowMs: 10_000, banMs: 60_000 } })
    for (let i = 0; i < 3; i++) {
      assert.equal(p.clientEnded('flappy', 'socket-closed'), undefined)
      clock.t += 1000
    }
    const ban = p.clientEnded('flappy', 'keep-alive-timeout')
    assert.ok(ban)
    assert.equal(ban.clientId, 'flappy')
    assert.equal(ban.until, clock.t + 60_000)
    assert.match(ban.reason ?? '', /flapping/)
    assert.deepEqual(p.connectBan('flappy', undefined), ban)
    assert.deepEqual(p.list(), [ban])
    assert.equal(p.connectBan('other', undefined), undefined)
    clock.t += 60_000
    assert.equal(p.connectBan('flappy', undefined), undefined)
    // The count started again: three more endings do not ban it.
    for (let i = 0; i < 3; i++) assert.equal(p.clientEnded('flappy', 'disconnect'), undefined)
  })

  test('the same number of endings spread wider than the window does not ban', () => {
    const { p, clock } = setup({ flapping: { maxDisconnects: 3, windowMs: 10_000, banMs: 60_000 } })
    for (let i = 0; i < 20; i++) {
      assert.equal(p.clientEnded('steady', 'socket-closed'), undefined, `ending ${i}`)
      clock.t += 3400 // at most 3 endings in any 10 s
    }
  })

  test('defaults (flapping: true) are 15 endings in 60 s, banned for 300 s', () => {
    const { p, clock } = setup({ flapping: true })
    for (let i = 0; i < 15; i++) assert.equal(p.clientEnded('c', 'socket-closed'), undefined)
    const ban = p.clientEnded('c', 'socket-closed')
    assert.equal(ban?.until, clock.t + 300_000)
  })

  test('endings that are not the client doing (server closing, host, broker errors) do not count', () => {
    const { p } = setup({ flapping: { maxDisconnects: 1 } })
    for (const reason of ['server-closing', 'closed-by-host', 'internal-error', 'persistence-error', 'hook-error'] as const) {
      for (let i = 0; i < 5; i++) assert.equal(p.clientEnded('c', reason), undefined)
    }
    assert.equal(p.clientEnded('c', 'taken-over'), undefined)
    assert.ok(p.clientEnded('c', 'connect-refused'))
  })

  test('flapping windows are swept once they pass, and repeated flapping bans do not pile up', () => {
    const { p, clock } = setup({ flapping: { maxDisconnects: 1, windowMs: 1000, banMs: 500 } })
    for (let i = 0; i < 100; i++) p.clientEnded(`client-${i}`, 'socket-closed')
    assert.equal(p.sizes().flappingClients, 100)
    clock.t += 1000
    p.clientEnded('late', 'socket-closed')
    assert.equal(p.sizes().flappingClients, 1)
    clock.t += 1000
    p.sweep()
    assert.equal(p.sizes().flappingClients, 0)
    for (let round = 0; round < 5; round++) {
      p.clientEnded('loop', 'socket-closed')
      assert.ok(p.clientEnded('loop', 'socket-closed'))
    }
    assert.equal(p.sizes().bans, 1)
    clock.t += 500
    p.sweep()
    assert.equal(p.sizes().bans, 0)
  })
})
