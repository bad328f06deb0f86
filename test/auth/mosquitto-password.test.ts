/**
 * Mosquitto password files: the three hash formats (vectors from `mosquitto_passwd`, from
 * openssl by hand, from hash-wasm), the parser's errors, and `mosquittoAuth`'s authenticate hook
 * over real connections, including reload.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { argon2id } from 'hash-wasm'
import { mosquittoAuth } from '../../src/auth/mosquitto/index.js'
import { parseHash, verifyPassword, type PasswordHash } from '../../src/auth/mosquitto/hashes.js'
import { parsePasswordFile } from '../../src/auth/mosquitto/password-file.js'
import { connackCode, skipWithout, startBroker, TEST_TIMEOUT, withBroker, type TestBroker } from '../helpers/index.js'

const run = promisify(execFile)
const passwdSkip = skipWithout('mosquitto_passwd')
const dir = mkdtempSync(join(tmpdir(), 'culex-mosquitto-passwd-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const fixture = new URL('./fixtures/sha512.passwd', import.meta.url)

let files = 0
/** Writes a file in the test's temporary directory and returns its path. */
function file(text: string): string {
  const path = join(dir, `passwd-${++files}`)
  writeFileSync(path, text)
  return path
}

/** `s` as a literal inside a RegExp. */
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** A user's hash from a parsed file, asserting it is there. */
function userHash(text: string, user: string): PasswordHash {
  const hash = parsePasswordFile(text, 'test').users.get(user)
  assert.ok(hash, `user ${user} in the file`)
  return hash
}

/** Awaits `work`, counting how often the event loop turned meanwhile (0 or 1 if it was blocked). */
async function countingTurns<T>(work: Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0
  let done = false
  const spin = (): void => {
    turns++
    if (!done) setImmediate(spin)
  }
  setImmediate(spin)
  try {
    return { value: await work, turns }
  } finally {
    done = true
  }
}

/** An argon2id PHC string for `password`, as `mosquitto_passwd -H argon2id` (2.1) writes them. */
async function argon2Line(user: string, password: string, iterations = 1, parallelism = 1, memorySize = 1024): Promise<string> {
  const encoded = await argon2id({ password, salt: randomBytes(16), iterations, parallelism, memorySize, hashLength: 32, outputType: 'encoded' })
  return `${user}:${encoded}\n`
}


describe('password hashes', { timeout: TEST_TIMEOUT }, () => {
  test('$7$ lines written by mosquitto_passwd verify their own password and no other', { skip: passwdSkip }, async () => {
    const path = join(dir, 'mosquitto_passwd')
    await run('mosquitto_passwd', ['-b', '-c', path, 'alice', 'alice pw'])
    await run('mosquitto_passwd', ['-b', path, 'bob', 'b:o:b'])
    await run('mosquitto_passwd', ['-b', path, 'chloé', 'pässwörd ✓'])
    const text = readFileSync(path, 'utf8')
    const alice = userHash(text, 'alice')
    assert.equal(alice.kind, 'pbkdf2-sha512', text)
    assert.ok(alice.kind === 'pbkdf2-sha512' && alice.iterations >= 1 && alice.hash.length === 64)
    assert.equal(await verifyPassword(alice, Buffer.from('alice pw')), true)
    assert.equal(await verifyPassword(alice, Buffer.from('alice pw ')), false)
    assert.equal(await verifyPassword(alice, Buffer.from('')), false)
    assert.equal(await verifyPassword(userHash(text, 'bob'), Buffer.from('b:o:b')), true, 'a password may hold colons')
    assert.equal(await verifyPassword(userHash(text, 'bob'), Buffer.from('alice pw')), false)
    assert.equal(await verifyPassword(userHash(text, 'chloé'), Buffer.from('pässwörd ✓')), true, 'UTF-8 user name and password')
  })

  test('a $6$ line made by hand with openssl (SHA-512 of password then salt) verifies', async () => {
    const dave = userHash(readFileSync(fixture, 'utf8'), 'dave')
    assert.equal(dave.kind, 'sha512')
    assert.equal(dave.salt.toString(), 'culex-salt-1')
    assert.equal(await verifyPassword(dave, Buffer.from('sesame')), true)
    assert.equal(await verifyPassword(dave, Buffer.from('Sesame')), false)
  })

  test('argon2id PHC strings (hash-wasm, several parameter sets) verify', async () => {
    const one = userHash(await argon2Line('erin', 'argon pw'), 'erin')
    assert.deepEqual([one.kind, one.kind === 'argon2id' && one.hash.length], ['argon2id', 32])
    assert.equal(await verifyPassword(one, Buffer.from('argon pw')), true)
    assert.equal(await verifyPassword(one, Buffer.from('argon px')), false)
    const two = userHash(await argon2Line('frank', 'other', 2, 2, 2048), 'frank')
    assert.equal(await verifyPassword(two, Buffer.from('other')), true)
    assert.equal(await verifyPassword(two, Buffer.from('argon pw')), false)
  })

  test('$7$ with a high iteration count is computed off the event loop', async () => {
    const salt = randomBytes(12)
    const iterations = 300_000
    const hash = pbkdf2Sync('slow', salt, iterations, 64, 'sha512')
    const stored = parseHash(`$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`)
    assert.ok(typeof stored !== 'string', String(stored))
    const { value: ok, turns } = await countingTurns(verifyPassword(stored, Buffer.from('slow')))
    assert.equal(ok, true)
    // Computed synchronously, the event loop would not have turned once before the answer.
    assert.ok(turns > 1, `the event loop turned ${turns} times while PBKDF2 ran`)
  })

  test('argon2id is computed off the event loop (Node\'s argon2, or a worker thread)', async () => {
    // Heavy enough to take tens of milliseconds: 64 MiB, 3 passes.
    const stored = userHash(await argon2Line('heavy', 'slow', 3, 1, 65536), 'heavy')
    const { value: ok, turns } = await countingTurns(verifyPassword(stored, Buffer.from('slow')))
    assert.equal(ok, true)
    // On the main thread hash-wasm yields only while it loads its WebAssembly (a few turns); the
    // computation itself (over 100 ms for 64 MiB and 3 passes on any machine) would allow none.
    assert.ok(turns > 100, `the event loop turned ${turns} times while argon2id ran`)
  })
})

describe('password file parsing', () => {
  test('comments, blank lines, CRLF endings and blanks around the fields', () => {
    const text = readFileSync(fixture, 'utf8').replace(/^dave:/m, '  dave :  ') + '\r\n\r\n   \n# another comment\n  # indented comment\r\n'
    const parsed = parsePasswordFile(text, 'test')
    assert.deepEqual([...parsed.users.keys()], ['dave'])
    assert.equal(parsed.argon2, false)
  })

  test('errors name the file and line', async () => {
    const good = readFileSync(fixture, 'utf8').split('\n').find((l) => l.startsWith('dave:')) as string
    const sha = good.slice('dave:'.length)
    const cases: Array<[string, RegExp]> = [
      ['# comment\nalice\n', /^f:2: expected user:hash$/],
      [':' + sha, /^f:1: empty user name$/],
      ['alice:\n', /^f:1: no password hash for user "alice"$/],
      ['alice:plaintext\n', /^f:1: user "alice": unknown password hash type/],
      ['alice:$5$abc$def\n', /^f:1: user "alice": unknown password hash type/],
      [`alice:${sha}:extra\n`, /^f:1: more than one ':'/],
      [`${good}\n\n${good}\n`, /^f:3: user "dave" appears twice$/],
      ['alice:$6$Y3VsZXgtc2FsdC0x$AAAA\n', /^f:1: user "alice": the hash is 3 bytes, not 64$/],
      ['alice:$6$not*base64$' + sha.split('$')[3] + '\n', /^f:1: user "alice": the salt is not base64$/],
      ['alice:$7$0$Y3VsZXgtc2FsdC0x$' + sha.split('$')[3] + '\n', /^f:1: user "alice": bad iteration count "0"$/],
      ['alice:$7$Y3VsZXgtc2FsdC0x$' + sha.split('$')[3] + '\n', /^f:1: user "alice": malformed \$7\$ hash$/],
      ['alice:$argon2id$v=19$m=1024,t=1$c2FsdHNhbHQ$aGFzaA\n', /^f:1: user "alice": malformed \$argon2id\$ hash/],
      ['alice:$argon2id$v=16$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n', /^f:1: user "alice": argon2 version 16 is not supported/],
    ]
    for (const [text, message] of cases) {
      assert.throws(() => parsePasswordFile(text, 'f'), { message }, JSON.stringify(text))
    }
  })

  test('mosquittoAuth throws at once on a bad or missing file, naming it', () => {
    const bad = file('# users\nalice:$6$x$y\n')
    assert.throws(() => mosquittoAuth({ passwordFile: bad }), { message: new RegExp(`^${escape(bad)}:2: user "alice": the salt is not base64$`) })
    const missing = join(dir, 'no-such-file')
    assert.throws(() => mosquittoAuth({ passwordFile: missing }), { message: new RegExp(`^${escape(missing)}: cannot read: .*ENOENT`) })
  })
})

describe('mosquittoAuth authenticate', { timeout: TEST_TIMEOUT }, () => {
  /** dave ($6$, password "sesame") and erin (argon2id, password "argon pw"). */
  const passwords = async (): Promise<string> => readFileSync(fixture, 'utf8') + (await argon2Line('erin', 'argon pw'))

  test('right password in, anything else refused with CONNACK 5 / 0x87 as Mosquitto; anonymous refused by default', async () => {
    const auth = mosquittoAuth({ passwordFile: file(await passwords()) })
    assert.deepEqual(Object.keys(auth.hooks), ['authenticate'])
    await withBroker({ ...auth.hooks }, async (b) => {
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'sesame' }), 0, '$6$ user')
      assert.equal(await connackCode(b.port, { username: 'erin', password: 'argon pw' }), 0, 'argon2id user')
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'wrong' }), 5, 'wrong password')
      assert.equal(await connackCode(b.port, { username: 'dave' }), 5, 'no password')
      assert.equal(await connackCode(b.port, { username: 'mallory', password: 'sesame' }), 5, 'unknown user')
      assert.equal(await connackCode(b.port, {}), 5, 'anonymous')
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'wrong', protocolVersion: 5 }), 0x87, 'MQTT 5 wrong password')
      assert.equal(await connackCode(b.port, { username: 'erin', password: 'argon pw', protocolVersion: 5 }), 0, 'MQTT 5 argon2id user')
    })
  })

  test('allowAnonymous: true lets clients without a user name in, and still checks those with one', async () => {
    const auth = mosquittoAuth({ passwordFile: file(await passwords()), allowAnonymous: true })
    await withBroker({ ...auth.hooks }, async (b) => {
      assert.equal(await connackCode(b.port, {}), 0)
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'sesame' }), 0)
      assert.equal(await connackCode(b.port, { username: 'mallory', password: 'x' }), 5)
    })
  })

  test('no password file: no hook, everyone in; with allowAnonymous false, no one in (as Mosquitto)', async () => {
    assert.deepEqual(Object.keys(mosquittoAuth({}).hooks), [])
    const closed = mosquittoAuth({ allowAnonymous: false })
    await withBroker({ ...closed.hooks }, async (b) => {
      assert.equal(await connackCode(b.port, {}), 5)
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'sesame' }), 5)
    })
  })

  test('reload swaps the passwords in; a broken file is refused with file:line and the old ones stay', async () => {
    const path = file(readFileSync(fixture, 'utf8'))
    const auth = mosquittoAuth({ passwordFile: path })
    let b: TestBroker | undefined
    try {
      b = await startBroker({ ...auth.hooks })
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'sesame' }), 0)
      writeFileSync(path, await argon2Line('dave', 'new secret'))
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'new secret' }), 5, 'not before reload')
      await auth.reload()
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'new secret' }), 0)
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'sesame' }), 5)
      writeFileSync(path, '# broken\ndave\n')
      await assert.rejects(auth.reload(), { message: `${path}:2: expected user:hash` })
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'new secret' }), 0, 'the rules in force stay')
      rmSync(path)
      await assert.rejects(auth.reload(), { message: new RegExp(`^${escape(path)}: cannot read: .*ENOENT`) })
      assert.equal(await connackCode(b.port, { username: 'dave', password: 'new secret' }), 0)
    } finally {
      await b?.close()
    }
  })
})
