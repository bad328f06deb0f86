/**
 * What a node joining with its id does about the lease of an earlier incarnation. A CI run once
 * failed here: the dead holder's lease expired between the failed join and the next look at it,
 * which read as "passed to another holder" and refused the restart as a live node's. The join now
 * reads the holder in the same Lua step as its failed SET, and a lease seen gone is retried at once.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { leaseVerdict } from '../../src/cluster/node.js'

test('a lease that expired since the last look is taken at once, not read as a live holder', () => {
  assert.equal(leaseVerdict({ holder: '7', ttl: 40 }, { holder: null, ttl: -2 }, false), 'retry')
  assert.equal(leaseVerdict(undefined, { holder: null, ttl: -2 }, true), 'retry', 'even past the deadline: nothing holds it')
})

test("a dead holder's lease running down is waited out; renewed, passed on or outliving the deadline is a live node's", () => {
  assert.equal(leaseVerdict(undefined, { holder: '7', ttl: 900 }, false), 'wait')
  assert.equal(leaseVerdict({ holder: '7', ttl: 900 }, { holder: '7', ttl: 700 }, false), 'wait')
  assert.equal(leaseVerdict({ holder: '7', ttl: 700 }, { holder: '7', ttl: 1000 }, false), 'live', 'renewed')
  assert.equal(leaseVerdict({ holder: '7', ttl: 700 }, { holder: '8', ttl: 1000 }, false), 'live', 'another incarnation took it')
  assert.equal(leaseVerdict({ holder: '7', ttl: 700 }, { holder: '7', ttl: 690 }, true), 'live', 'past the deadline')
})
