/**
 * Mosquitto ACL files: the parser (what each line means, and its errors) and the decider (user
 * and anonymous blocks, deny first, patterns with %c and %u), then `mosquittoAuth`'s ACL hooks
 * on a broker: publish refused, SUBSCRIBE granted, delivery and retained messages filtered, reload.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { aclAllows, parseAclFile, READ, WRITE, type AclRules } from '../../src/auth/mosquitto/acl-file.js'
import { mosquittoAuth } from '../../src/auth/mosquitto/index.js'
import type { Client, Message } from '../../src/index.js'
import type { MqttClient } from 'mqtt'
import { fence, subackCodes, TEST_TIMEOUT, withBroker, withV5Broker } from '../helpers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'culex-mosquitto-acl-'))
after(() => rmSync(dir, { recursive: true, force: true }))

let files = 0
function file(text: string): string {
  const path = join(dir, `acl-${++files}`)
  writeFileSync(path, text)
  return path
}

/** Publishes at QoS 1 and returns the PUBACK reason code (0 for a 3.1.1 PUBACK), refusals included. */
function pubackCode(client: MqttClient, topic: string, payload: string): Promise<number> {
  return new Promise((resolve) => {
    client.publish(topic, payload, { qos: 1 }, (error, packet) => {
      resolve(error ? ((error as Error & { code?: number }).code ?? -1) : ((packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0))
    })
  })
}

/** Who may do what: `can(rules, 'alice', 'r', 'a/b')`; `undefined` user = anonymous; id defaults to 'id-<user>'. */
function can(rules: AclRules, username: string | undefined, rw: 'r' | 'w', topic: string, id = `id-${username ?? 'anon'}`): boolean {
  return aclAllows(rules, { id, username }, topic, rw === 'r' ? READ : WRITE)
}

describe('ACL file parsing', () => {
  test('topic lines before any user line are the anonymous block; user blocks gather per name; patterns are global', () => {
    const rules = parseAclFile(
      [
        '# comment',
        'topic read public/#',
        '',
        'user alice',
        'topic alice/#',
        'pattern write clients/%c',
        'user bob',
        'topic write bob/in',
        'user alice',
        'topic deny alice/secret',
        '   # indented comment',
      ].join('\n'),
      'acl',
    )
    assert.deepEqual(rules.anonymous, [{ filter: 'public/#', access: READ }])
    assert.deepEqual(rules.users.get('alice'), [
      { filter: 'alice/secret', access: 0 },
      { filter: 'alice/#', access: READ | WRITE },
    ])
    assert.deepEqual(rules.users.get('bob'), [{ filter: 'bob/in', access: WRITE }])
    assert.deepEqual(rules.patterns, [{ filter: 'clients/%c', access: WRITE, usesUsername: false }])
  })

  test('fields are split on spaces as Mosquitto does: the filter is the rest of the line; one field alone is the filter', () => {
    const rules = parseAclFile(
      'user  spaced name  \r\ntopic   read   with space/x  \r\ntopic read\r\ntopic deny\r\npattern read users/%u/#\r\n',
      'acl',
    )
    assert.deepEqual(rules.users.get('spaced name'), [
      { filter: 'with space/x', access: READ },
      // `topic read` and `topic deny` are the topics "read" and "deny", readwrite (strtok: no remainder).
      { filter: 'read', access: READ | WRITE },
      { filter: 'deny', access: READ | WRITE },
    ])
    assert.deepEqual(rules.patterns, [{ filter: 'users/%u/#', access: READ, usesUsername: true }])
    assert.equal(rules.anonymous, undefined)
  })

  test('errors name the file and line', () => {
    const cases: Array<[string, string]> = [
      ['topic read a\nTopic read b\n', 'f:2: unknown keyword "Topic" (expected topic, pattern or user; fields are separated by spaces)'],
      ['topic\tread\ta\n', 'f:1: unknown keyword "topic\\tread\\ta" (expected topic, pattern or user; fields are separated by spaces)'],
      ['\n\ntopic\n', 'f:3: topic without a topic filter'],
      ['pattern   \n', 'f:1: pattern without a topic filter'],
      ['topic readonly a/b\n', 'f:1: unknown access "readonly" (expected read, write, readwrite or deny)'],
      ['topic read a/#/b\n', 'f:1: invalid topic filter "a/#/b"'],
      ['pattern read a+/%c\n', 'f:1: invalid topic filter "a+/%c"'],
      ['user alice\nuser\n', 'f:2: user without a name'],
      ['acl alice\n', 'f:1: unknown keyword "acl" (expected topic, pattern or user; fields are separated by spaces)'],
    ]
    for (const [text, message] of cases) assert.throws(() => parseAclFile(text, 'f'), { message }, JSON.stringify(text))
  })
})

describe('ACL decisions (Mosquitto 2.0 mosquitto_acl_check_default)', () => {
  const rules = parseAclFile(
    [
      'topic read public/#',
      'topic write anon/in',
      'user alice',
      'topic readwrite alice/#',
      'topic read shared/#',
      'topic deny shared/secret',
      'topic write shared/inbox',
      'topic read $SYS/broker/#',
      'user bob',
      'topic read alice/news',
      'pattern readwrite clients/%c/#',
      'pattern read users/%u/#',
      'pattern deny alice/private',
    ].join('\n'),
    'acl',
  )

  test('read, write and readwrite grant what they say, and nothing else is granted', () => {
    assert.equal(can(rules, 'alice', 'w', 'alice/x'), true)
    assert.equal(can(rules, 'alice', 'r', 'alice/x/y'), true)
    assert.equal(can(rules, 'alice', 'r', 'alice'), true, "'alice/#' covers 'alice'")
    assert.equal(can(rules, 'alice', 'r', 'shared/a'), true)
    assert.equal(can(rules, 'alice', 'w', 'shared/a'), false, 'read only')
    assert.equal(can(rules, 'alice', 'w', 'shared/inbox'), true, 'write on a read-only subtree')
    assert.equal(can(rules, 'alice', 'r', 'shared/inbox'), true)
    assert.equal(can(rules, 'alice', 'r', 'elsewhere'), false)
    assert.equal(can(rules, 'bob', 'r', 'alice/news'), true)
    assert.equal(can(rules, 'bob', 'w', 'alice/news'), false)
  })

  test('deny is checked first within a list, whatever its place in the file', () => {
    assert.equal(can(rules, 'alice', 'r', 'shared/secret'), false)
    assert.equal(can(rules, 'alice', 'w', 'shared/secret'), false)
    assert.equal(can(rules, 'alice', 'r', 'shared/secret/deeper'), true, 'deny matches as a filter, not as a prefix')
  })

  test("a pattern deny does not take back what the user's own topic lines grant (users are checked before patterns)", () => {
    assert.equal(can(rules, 'alice', 'r', 'alice/private'), true)
    assert.equal(can(rules, 'bob', 'r', 'alice/private'), false)
  })

  test('anonymous clients get the lines before the first user line, and the patterns without %u', () => {
    assert.equal(can(rules, undefined, 'r', 'public/news'), true)
    assert.equal(can(rules, undefined, 'w', 'public/news'), false)
    assert.equal(can(rules, undefined, 'w', 'anon/in'), true)
    assert.equal(can(rules, undefined, 'r', 'alice/x'), false)
    assert.equal(can(rules, undefined, 'w', 'clients/dev1/x', 'dev1'), true, '%c applies to anonymous clients')
    assert.equal(can(rules, undefined, 'r', 'users/%u/x'), false, 'a %u pattern is skipped, not matched literally')
  })

  test('%c and %u are substituted; another client id or user name does not match', () => {
    assert.equal(can(rules, 'bob', 'w', 'clients/dev1/status', 'dev1'), true)
    assert.equal(can(rules, 'bob', 'w', 'clients/dev2/status', 'dev1'), false)
    assert.equal(can(rules, 'bob', 'r', 'users/bob/inbox'), true)
    assert.equal(can(rules, 'bob', 'w', 'users/bob/inbox'), false)
    assert.equal(can(rules, 'bob', 'r', 'users/alice/inbox'), false)
    assert.equal(can(rules, 'carol', 'r', 'users/carol/x'), true, 'a user with no topic lines still gets the patterns')
    assert.equal(can(rules, 'bob', 'r', 'clients/a/b/x', 'a/b'), true, "a '/' in the client id is not refused (Mosquitto checks + and # only)")
  })

  test("a client id or user name holding '+' or '#' gets no pattern at all, but keeps its user's topic lines", () => {
    assert.equal(can(rules, 'bob', 'r', 'users/bob/x', 'dev+1'), false)
    assert.equal(can(rules, 'bob', 'r', 'alice/news', 'dev+1'), true)
    assert.equal(can(rules, 'b#b', 'r', 'users/b#b/x'), false)
    assert.equal(can(rules, undefined, 'w', 'clients/x#/y', 'x#'), false)
  })

  test("'#' does not reach $ topics; a $SYS rule does", () => {
    const all = parseAclFile('user root\ntopic readwrite #\ntopic read +/x\n', 'acl')
    assert.equal(can(all, 'root', 'r', 'any/thing'), true)
    assert.equal(can(all, 'root', 'r', '$SYS/broker/uptime'), false)
    assert.equal(can(all, 'root', 'r', '$x'), false)
    assert.equal(can(rules, 'alice', 'r', '$SYS/broker/uptime'), true)
    assert.equal(can(rules, 'bob', 'r', '$SYS/broker/uptime'), false)
  })

  test('with no list for the client and no patterns, everything is denied', () => {
    const usersOnly = parseAclFile('user alice\ntopic #\n', 'acl')
    assert.equal(can(usersOnly, undefined, 'r', 'a'), false)
    assert.equal(can(usersOnly, 'bob', 'r', 'a'), false)
    assert.equal(can(usersOnly, 'alice', 'r', 'a'), true)
    assert.equal(can(parseAclFile('# nothing\n', 'acl'), 'alice', 'w', 'a'), false)
  })
})

describe('mosquittoAuth with an ACL file, on a broker', { timeout: TEST_TIMEOUT }, () => {
  const aclText = ['topic write fence/#', 'topic read public/#', 'topic write public/in', 'topic deny public/secret', 'pattern readwrite fence/%c', 'pattern write out/%c'].join('\n')

  test('hooks: authorizePublish and authorizeDeliver, no authorizeSubscribe (Mosquitto grants every SUBSCRIBE)', () => {
    assert.deepEqual(Object.keys(mosquittoAuth({ aclFile: file(aclText) }).hooks).sort(), ['authorizeDeliver', 'authorizePublish'])
  })

  test('an offline session whose user name is unknown (restored from the store) is judged as anonymous only where anonymous clients may connect', () => {
    const text = 'topic read public/#\nuser alice\ntopic read alice/#\n'
    const offline = (username: string | undefined): Client => ({ id: 'restored', username, connected: false }) as unknown as Client
    const online = { id: 'live', username: undefined, connected: true } as unknown as Client
    const message = (topic: string): Message => ({ topic, payload: Buffer.alloc(0), qos: 1, retain: false })
    const open = mosquittoAuth({ aclFile: file(text), allowAnonymous: true }).hooks.authorizeDeliver
    const closed = mosquittoAuth({ aclFile: file(text), allowAnonymous: false }).hooks.authorizeDeliver
    assert.ok(open && closed)
    assert.equal(open(offline(undefined), message('public/a')), true)
    assert.equal(closed(offline(undefined), message('public/a')), false)
    assert.equal(closed(online, message('public/a')), true, 'a connected client without a user name is anonymous')
    assert.equal(closed(offline('alice'), message('alice/a')), true, 'an offline session that kept its user name')
    assert.equal(closed(offline('alice'), message('public/a')), false)
  })

  test('a refused publish gets PUBACK 0x87 and reaches no one; an allowed one is delivered', async () => {
    const auth = mosquittoAuth({ aclFile: file(aclText + '\npattern read #\n') })
    await withV5Broker({ ...auth.hooks }, async (b) => {
      const { client: sub, inbox } = await b.mqtt({ clientId: 'watcher' })
      await sub.subscribeAsync('#', { qos: 1 })
      const { client: pub } = await b.mqtt({ clientId: 'p1' })
      assert.equal(await pubackCode(pub, 'public/news', 'forged'), 0x87)
      assert.equal(await pubackCode(pub, 'out/p1', 'mine'), 0)
      await inbox.waitFor('mine')
      assert.deepEqual(inbox.withPayload('forged'), [])
    })
  })

  test('SUBSCRIBE is granted whatever the ACL; READ is checked per delivered and per retained message', async () => {
    const auth = mosquittoAuth({ aclFile: file(aclText) })
    await withBroker({ ...auth.hooks }, async (b) => {
      await b.broker.publish({ topic: 'public/kept', payload: 'retained ok', qos: 1, retain: true })
      await b.broker.publish({ topic: 'public/secret', payload: 'retained secret', qos: 1, retain: true })
      await b.broker.publish({ topic: 'private/kept', payload: 'retained private', qos: 1, retain: true })
      const { client, inbox } = await b.connectRecorded({ clientId: 'reader' })
      assert.deepEqual(await subackCodes(client, { 'fence/reader': { qos: 1 } }), [1])
      // Granted though nothing under 'private/' nor 'public/secret' is readable.
      assert.deepEqual(await subackCodes(client, { 'public/#': { qos: 1 }, 'private/#': { qos: 1 } }), [1, 1])
      await fence(b, 'fence/reader', inbox, 'after retained')
      assert.deepEqual(inbox.messages.map((m) => m.payload), ['retained ok', 'after retained'])
      await b.broker.publish({ topic: 'public/live', payload: 'live ok', qos: 1 })
      await b.broker.publish({ topic: 'public/secret', payload: 'live secret', qos: 1 })
      await b.broker.publish({ topic: 'private/x', payload: 'live private', qos: 1 })
      await fence(b, 'fence/reader', inbox, 'after live')
      assert.deepEqual(
        inbox.messages.map((m) => m.payload),
        ['retained ok', 'after retained', 'live ok', 'after live'],
      )
    })
  })

  test('reload applies new ACL rules to connected clients; a broken file is refused and the old rules stay', async () => {
    const path = file(aclText)
    const auth = mosquittoAuth({ aclFile: path })
    await withV5Broker({ ...auth.hooks }, async (b) => {
      const { client } = await b.mqtt({ clientId: 'dev' })
      assert.equal(await pubackCode(client, 'late/x', 'a'), 0x87)
      writeFileSync(path, aclText + '\ntopic write late/#\n')
      await auth.reload()
      assert.ok((await pubackCode(client, 'late/x', 'b')) < 0x80)
      writeFileSync(path, 'topic write late/#\ntopic bogus late/#\n')
      await assert.rejects(auth.reload(), { message: `${path}:2: unknown access "bogus" (expected read, write, readwrite or deny)` })
      assert.ok((await pubackCode(client, 'late/x', 'c')) < 0x80, 'the rules in force stay')
      assert.equal(await pubackCode(client, 'elsewhere', 'd'), 0x87)
    })
  })
})
