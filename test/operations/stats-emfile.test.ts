/**
 * Out of file descriptors (a flood of sockets does that): `process.memoryUsage()` throws EMFILE,
 * which must neither make `broker.stats()` throw nor end the process from the $SYS timer.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

test('stats and the $SYS refresh survive a process out of file descriptors', () => {
  // tsx and the broker load with the descriptors they need, then the script takes the rest.
  const run = spawnSync('bash', ['-c', 'ulimit -n 256 && exec "$0" --import tsx test/operations/fixtures/stats-without-fds.mts', process.execPath], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.equal(run.status, 0, `exit ${run.status}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`)
  assert.match(run.stdout, /heap read/)
  assert.match(run.stdout, /^ok$/m)
})
