// The configuration loader: file positions, "did you mean", CULEX_* variables, precedence
// (defaults < file < env < flags), cross-field rules, relative paths, redaction, the JSON Schema.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { parse as parseYaml } from 'yaml'
import { Broker } from '../../src/broker.js'
import { parseCliArgs } from '../../src/cli/args.js'
import { envName, envNames, loadEnv, screamingSnake } from '../../src/cli/config/env.js'
import { configJsonSchemaText, SCHEMA_FILE } from '../../src/cli/config/json-schema.js'
import { printConfig, REDACTED } from '../../src/cli/config/print.js'
import { resolveConfig, type ResolvedConfig } from '../../src/cli/config/resolve.js'
import { configSchema, LIMIT_RANGES, type CulexConfig } from '../../src/cli/config/schema.js'
import { closest, levenshtein } from '../../src/cli/config/suggest.js'
import { objectVariants } from '../../src/cli/config/walk.js'
import { ConfigError } from '../../src/cli/errors.js'
import { DEFAULT_LIMITS, type Limits } from '../../src/options.js'

const dir = mkdtempSync(path.join(tmpdir(), 'culex-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const cwd = path.join(dir, 'work')
mkdirSync(cwd)

let files = 0
/** Writes a configuration file in a directory of its own and returns its path. */
function configFile(text: string, extension = '.yaml'): string {
  const folder = path.join(dir, `conf-${++files}`)
  mkdirSync(folder)
  const file = path.join(folder, `culex${extension}`)
  writeFileSync(file, text)
  return file
}

/** Resolves the configuration of `argv` with `env`, from `cwd`. */
function resolve(argv: string[], env: NodeJS.ProcessEnv = {}): ResolvedConfig {
  return resolveConfig({ options: parseCliArgs(argv, cwd), env, cwd })
}

function config(argv: string[], env: NodeJS.ProcessEnv = {}): CulexConfig {
  return resolve(argv, env).config
}

/** The problems of a configuration that must be refused. */
function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    resolve(argv, env)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, got ${String(error)}`)
    return error.problems
  }
  return assert.fail('the configuration was accepted')
}

test('no file, no env, no flags: one tcp listener on 1883 (all addresses), memory, the broker defaults', () => {
  const c = config([])
  assert.deepEqual(c.listeners, [{ type: 'tcp', port: 1883, proxyProtocol: false }])
  assert.deepEqual(c.persistence, { type: 'memory' })
  assert.deepEqual(c.limits, { ...DEFAULT_LIMITS })
  assert.equal(c.capabilities.maximumQoS, 2)
  assert.deepEqual(c.sys, { interval: 10 })
  assert.deepEqual(c.log, { level: 'info', format: 'text' })
  assert.deepEqual(c.drain, { timeoutMs: 25_000, spreadMs: 0 })
  assert.equal(c.auth, undefined)
  assert.equal(c.http, undefined)
  assert.equal(c.cluster, undefined)
})

test('a full YAML file is read as written, with defaults filled in', () => {
  const file = configFile(`# a comment
listeners:
  - type: tcp
    port: 1884
    host: 127.0.0.1
  - type: ws
    port: 8080
  - type: unix
    path: /run/culex.sock
persistence: { type: sqlite, path: /var/lib/culex.db, durability: power }
limits: { maxQueued: 5, maxInflight: 10 }
capabilities: { maximumQoS: 1, retainAvailable: false }
sys: { interval: 0 }
auth: { passwordFile: /etc/culex/passwd, aclFile: /etc/culex/acl }
protection:
  maxConnectionsPerIp: 10
  connectRatePerIp: 2.5
  bans: [{ clientId: bad, until: 2030-01-01T00:00:00Z, reason: abuse }, { address: 10.0.0.0/8 }]
  flapping: true
http: { port: 9100, host: 0.0.0.0, dashboard: false }
log: { level: debug, format: json }
drain: { timeoutMs: 20000, spreadMs: 5000 }
`)
  const c = config(['--config', file])
  assert.deepEqual(c.listeners, [
    { type: 'tcp', port: 1884, host: '127.0.0.1', proxyProtocol: false },
    { type: 'ws', port: 8080, path: '/mqtt' },
    { type: 'unix', path: '/run/culex.sock' },
  ])
  assert.deepEqual(c.persistence, { type: 'sqlite', path: '/var/lib/culex.db', durability: 'power' })
  assert.equal(c.limits.maxQueued, 5)
  assert.equal(c.limits.maxInflight, 10)
  assert.equal(c.limits.maxConnections, DEFAULT_LIMITS.maxConnections)
  assert.equal(c.capabilities.maximumQoS, 1)
  assert.equal(c.capabilities.retainAvailable, false)
  assert.equal(c.sys.interval, 0)
  assert.deepEqual(c.auth, { passwordFile: '/etc/culex/passwd', aclFile: '/etc/culex/acl', allowAnonymous: false })
  assert.deepEqual(c.protection, {
    maxConnectionsPerIp: 10,
    connectRatePerIp: 2.5,
    bans: [{ clientId: 'bad', until: '2030-01-01T00:00:00Z', reason: 'abuse' }, { address: '10.0.0.0/8' }],
    flapping: true,
  })
  assert.deepEqual(c.http, { port: 9100, host: '0.0.0.0', dashboard: false })
  assert.deepEqual(c.log, { level: 'debug', format: 'json' })
  assert.deepEqual(c.drain, { timeoutMs: 20_000, spreadMs: 5000 })
})

test('errors name file, line, column and path, all of them, in file order', () => {
  const file = configFile(`listeners:
  - type: tcp
    port: 1883
  - type: ws
    port: 70000
limits:
  maxQueue: 5
  maxInflight: 0
lgo: {}
`)
  const name = path.relative(cwd, file)
  assert.deepEqual(problems(['--config', name]), [
    `${name}:5:5 listeners[1].port: expected an integer from 0 to 65535, got 70000`,
    `${name}:7:3 limits.maxQueue: unknown key (did you mean maxQueued?)`,
    `${name}:8:3 limits.maxInflight: expected an integer from 1 to 65535, got 0`,
    `${name}:9:1 lgo: unknown key (did you mean log?)`,
  ])
})

test('did you mean: listener types, keys of another variant, keys nothing is close to', () => {
  const file = configFile(`listeners:
  - type: tpc
  - { type: tcp, path: /mqtt }
  - { type: tls, port: 8883, tls: { cert: c.pem } }
persistence: { type: redis, url: "redis://localhost", durability: power }
protection: { flapping: { maxDisconect: 3 } }
capabilities: { zzzzzzzzzzzzzz: 1 }
`)
  const got = problems(['--config', file])
  const at = (line: number, col: number, rest: string): string => `${file}:${line}:${col} ${rest}`
  assert.deepEqual(got, [
    at(2, 5, 'listeners[0].type: expected one of tcp, tls, ws, wss or unix, got "tpc" (did you mean tcp?)'),
    at(3, 18, 'listeners[1].path: only with type ws, wss or unix'),
    at(4, 30, 'listeners[2].tls.key: missing: expected a string'),
    at(5, 55, 'persistence.durability: only with type sqlite'),
    at(6, 27, 'protection.flapping.maxDisconect: unknown key (did you mean maxDisconnects?)'),
    at(
      7,
      17,
      'capabilities.zzzzzzzzzzzzzz: unknown key; expected one of maximumQoS, retainAvailable, wildcardSubscriptionAvailable, subscriptionIdentifiersAvailable, sharedSubscriptionAvailable, responseInformation or validatePayloadFormat',
    ),
  ])
})

test('a JSON file is parsed with positions too', () => {
  const file = configFile(
    `{
  "listeners": [
    { "type": "tcp", "port": 1883 },
    { "type": "ws", "port": "8080" }
  ],
  "limits": { "maxQueued": 7 }
}
`,
    '.json',
  )
  assert.deepEqual(problems(['--config', file]), [`${file}:4:21 listeners[1].port: expected an integer from 0 to 65535, got "8080"`])
  const good = configFile('{ "listeners": [{ "type": "tcp", "port": 0 }], "limits": { "maxQueued": 7 }, "$schema": "./culex.schema.json" }', '.json')
  const c = config(['--config', good])
  assert.equal(c.limits.maxQueued, 7)
  assert.equal(c.$schema, undefined, '$schema is allowed, for editors, and dropped')
})

test('YAML syntax errors, a top level that is not a mapping, a missing file, a wrong extension', () => {
  const broken = configFile('limits:\n  maxQueued: 5\n  maxQueued: 6\n')
  assert.deepEqual(problems(['--config', broken]), [`${broken}:3:3: Map keys must be unique`])
  const list = configFile('- type: tcp\n')
  assert.deepEqual(problems(['--config', list]), [`${list}:1:1: expected a mapping of settings (listeners:, limits: ...) at the top level`])
  assert.deepEqual(problems(['--config', 'nowhere.yaml']), [`--config nowhere.yaml: cannot read ${path.join(cwd, 'nowhere.yaml')}: no such file`])
  assert.deepEqual(problems(['--config', 'culex.toml']), ['--config culex.toml: expected a .yaml, .yml or .json file'])
  // An empty file is an empty configuration.
  assert.deepEqual(config(['--config', configFile('# nothing yet\n')]).listeners, [{ type: 'tcp', port: 1883, proxyProtocol: false }])
})

test('CULEX_* variables: __ nests, SCREAMING_SNAKE names camelCase keys, values are JSON when they parse', () => {
  const c = config([], {
    CULEX_AUTH__ALLOW_ANONYMOUS: 'true',
    CULEX_LIMITS__MAX_QUEUED: '5',
    CULEX_CAPABILITIES__MAXIMUM_QOS: '1',
    CULEX_LISTENERS: '[{"type":"tcp","port":1884},{"type":"ws","port":8081,"path":"/ws"}]',
    CULEX_LOG__FORMAT: 'json',
    CULEX_CLUSTER__REDIS: 'redis://localhost:6379',
    CULEX_CLUSTER__NODE_ID: '7',
    CULEX_PROTECTION__FLAPPING__MAX_DISCONNECTS: '3',
  })
  assert.equal(c.auth?.allowAnonymous, true)
  assert.equal(c.limits.maxQueued, 5)
  assert.equal(c.capabilities.maximumQoS, 1)
  assert.deepEqual(c.listeners, [
    { type: 'tcp', port: 1884, proxyProtocol: false },
    { type: 'ws', port: 8081, path: '/ws' },
  ])
  assert.equal(c.log.format, 'json')
  assert.equal(c.cluster?.nodeId, '7', 'a setting that takes a string keeps the text')
  assert.deepEqual(c.protection?.flapping, { maxDisconnects: 3 })
  assert.equal(c.persistence, undefined, 'the cluster keeps the sessions')
})

test('a whole section as JSON, and single keys inside it, combine', () => {
  const c = config([], { CULEX_LIMITS: '{"maxQueued": 3, "maxInflight": 4}', CULEX_LIMITS__MAX_INFLIGHT: '9' })
  assert.equal(c.limits.maxQueued, 3)
  assert.equal(c.limits.maxInflight, 9)
})

test('unknown CULEX_ variables are errors naming them, with the closest name; CULEX_BENCH_, CULEX_TEST_ and CULEX_CRASH_ are not configuration', () => {
  assert.deepEqual(problems([], { CULEX_AUTH_ALLOW_ANONYMOUS: 'true', CULEX_LIMITS__MAX_QUEUE: '5', CULEX_NOTHING_LIKE_IT: 'x' }), [
    '$CULEX_AUTH_ALLOW_ANONYMOUS: unknown variable (did you mean CULEX_AUTH__ALLOW_ANONYMOUS?)',
    '$CULEX_LIMITS__MAX_QUEUE: unknown variable (did you mean CULEX_LIMITS__MAX_QUEUED?)',
    '$CULEX_NOTHING_LIKE_IT: unknown variable',
  ])
  assert.deepEqual(problems([], { CULEX_LISTENERS__0__PORT: '1' }), ["$CULEX_LISTENERS__0__PORT: listeners is a list: set it whole, as JSON (CULEX_LISTENERS='[...]')"])
  assert.deepEqual(problems([], { CULEX_PROTECTION__FLAPPING: 'true', CULEX_PROTECTION__FLAPPING__BAN_MS: '5' }), [
    '$CULEX_PROTECTION__FLAPPING__BAN_MS: conflicts with $CULEX_PROTECTION__FLAPPING, which sets protection.flapping to a value that is not a mapping',
  ])
  assert.deepEqual(problems([], { CULEX_PROTECTION: '{"flapping": false}', CULEX_PROTECTION__FLAPPING__BAN_MS: '5' }), [
    '$CULEX_PROTECTION__FLAPPING__BAN_MS: conflicts with $CULEX_PROTECTION, which sets protection.flapping to a value that is not a mapping',
  ])
  const c = config([], { CULEX_BENCH_NODE_ARGS: '--x', CULEX_TEST_HIDE: 'ioredis', CULEX_CRASH_SEED: '1', CULEX_LIMITS__MAX_QUEUED: '', PATH: '/bin' })
  assert.equal(c.limits.maxQueued, DEFAULT_LIMITS.maxQueued, 'an empty variable is not set')
})

test('a bad value from the environment names the variable', () => {
  assert.deepEqual(problems([], { CULEX_LIMITS__MAX_QUEUED: 'lots', CULEX_LISTENERS: '[{"type":"tcp","port":99999}]' }), [
    '$CULEX_LIMITS__MAX_QUEUED limits.maxQueued: expected a non-negative integer, got "lots"',
    '$CULEX_LISTENERS listeners[0].port: expected an integer from 0 to 65535, got 99999',
  ])
  assert.deepEqual(problems([], { CULEX_PORT: 'x' }), ['$CULEX_PORT listeners[0].port: expected an integer from 0 to 65535, got "x"'])
})

test('a bad value from a flag names the flag', () => {
  assert.deepEqual(problems(['--sys-interval', 'often', '--log-level', 'loud', '--http-port', '70000']), [
    '--http-port http.port: expected an integer from 0 to 65535, got 70000',
    '--log-level log.level: expected one of error, warn, info or debug, got "loud"',
    '--sys-interval sys.interval: expected an integer from 0 to 2147483, got "often"',
  ])
})

test('precedence: defaults < file < environment < flags', () => {
  const file = configFile('limits: { maxQueued: 1, maxInflight: 1, maxConnections: 1 }\nlog: { level: warn }\n')
  const env = { CULEX_LIMITS__MAX_INFLIGHT: '2', CULEX_LIMITS__MAX_CONNECTIONS: '2', CULEX_LOG__LEVEL: 'error' }
  const c = config(['--config', file, '--max-connections', '3', '--log-level', 'debug'], env)
  assert.equal(c.limits.maxQueued, 1, 'the file over the default')
  assert.equal(c.limits.maxInflight, 2, 'env over the file')
  assert.equal(c.limits.maxConnections, 3, 'a flag over env')
  assert.equal(c.log.level, 'debug')
  assert.equal(c.limits.maxPacketSize, DEFAULT_LIMITS.maxPacketSize, 'the default where nothing is given')
})

test('--port and --host set the first tcp listener, over CULEX_PORT/CULEX_HOST, over the file; one is added if the file has none', () => {
  const file = configFile('listeners:\n  - { type: ws, port: 8080 }\n  - { type: tcp, port: 1884, host: 10.0.0.1 }\n  - { type: tcp, port: 1885 }\n')
  assert.deepEqual(config(['--config', file]).listeners[1], { type: 'tcp', port: 1884, host: '10.0.0.1', proxyProtocol: false })
  assert.deepEqual(config(['--config', file], { CULEX_PORT: '1999' }).listeners[1], { type: 'tcp', port: 1999, host: '10.0.0.1', proxyProtocol: false })
  const both = config(['--config', file, '--port', '0', '--host', '127.0.0.1'], { CULEX_PORT: '1999', CULEX_HOST: '::1' })
  assert.deepEqual(both.listeners[1], { type: 'tcp', port: 0, host: '127.0.0.1', proxyProtocol: false })
  assert.deepEqual(both.listeners[2], { type: 'tcp', port: 1885, proxyProtocol: false }, 'only the first tcp listener')
  const wsOnly = configFile('listeners:\n  - { type: ws, port: 8080 }\n')
  assert.deepEqual(config(['--config', wsOnly, '--port', '1883']).listeners, [
    { type: 'ws', port: 8080, path: '/mqtt' },
    { type: 'tcp', port: 1883, proxyProtocol: false },
  ])
  assert.deepEqual(config(['--host', '127.0.0.1']).listeners, [{ type: 'tcp', port: 1883, host: '127.0.0.1', proxyProtocol: false }])
})

test('--persistence gives the whole store: another type replaces the file\'s, the same type keeps its other keys', () => {
  const file = configFile('persistence: { type: sqlite, path: data.db, durability: power }\n')
  assert.deepEqual(config(['--config', file, '--persistence', 'redis://h:6379']).persistence, { type: 'redis', url: 'redis://h:6379' })
  assert.deepEqual(config(['--config', file, '--persistence', 'sqlite:other.db']).persistence, { type: 'sqlite', path: path.join(cwd, 'other.db'), durability: 'power' })
  assert.deepEqual(config(['--config', file], { CULEX_PERSISTENCE__TYPE: 'memory' }).persistence, { type: 'memory' })
})

test('cross-field rules: cluster with persistence, two listeners on one port, trustedProxies without proxyProtocol, bans', () => {
  const file = configFile(`listeners:
  - { type: tcp, port: 1883 }
  - { type: ws, port: 1883 }
  - { type: tcp, port: 1884, host: 127.0.0.1, trustedProxies: [10.0.0.1] }
  - { type: tcp, port: 1884, host: 127.0.0.2 }
persistence: { type: memory }
http: { port: 1884 }
protection:
  bans: [{ clientId: a, username: b }, {}]
`)
  assert.deepEqual(problems(['--config', file, '--cluster', 'redis://h']), [
    `${file}:3:17 listeners[1].port: port 1883 is also used by listeners[0]`,
    `${file}:4:47 listeners[2].trustedProxies: applies with proxyProtocol: true only`,
    `${file}:6:1 persistence: not with cluster: the cluster keeps sessions and retained messages in its own Redis`,
    `${file}:7:9 http.port: port 1884 is also used by listeners[2]`,
    `${file}:9:10 protection.bans[0]: give exactly one of clientId, username or address, not clientId and username`,
    `${file}:9:40 protection.bans[1]: give exactly one of clientId, username or address`,
  ])
})

test('the flags that go together still go together, as before', () => {
  assert.throws(() => parseCliArgs(['--durability', 'power']), /--durability applies to --persistence sqlite:PATH only/)
  assert.throws(() => parseCliArgs(['--cluster', 'redis://h', '--persistence', 'memory']), /do not give --persistence/)
})

test('relative file names: from the file, relative to the file; from env and flags, to the working directory', () => {
  const file = configFile(`listeners:
  - { type: tls, port: 8883, tls: { cert: certs/server.crt, key: /abs/server.key, ca: [ca1.pem, ca2.pem] } }
  - { type: unix, path: culex.sock }
persistence: { type: sqlite, path: data/culex.db }
auth: { aclFile: acl }
`)
  const base = path.dirname(file)
  const c = config(['--config', file, '--password-file', 'passwd'])
  const tls = c.listeners[0]
  assert.ok(tls?.type === 'tls')
  assert.equal(tls.tls.cert, path.join(base, 'certs/server.crt'))
  assert.equal(tls.tls.key, '/abs/server.key')
  assert.deepEqual(tls.tls.ca, [path.join(base, 'ca1.pem'), path.join(base, 'ca2.pem')])
  assert.deepEqual(c.listeners[1], { type: 'unix', path: path.join(base, 'culex.sock') })
  assert.deepEqual(c.persistence, { type: 'sqlite', path: path.join(base, 'data/culex.db') })
  assert.deepEqual(c.auth, { aclFile: path.join(base, 'acl'), passwordFile: path.join(cwd, 'passwd'), allowAnonymous: false })
  assert.equal(config([], { CULEX_AUTH__ACL_FILE: 'acl' }).auth?.aclFile, path.join(cwd, 'acl'))
})

test('auth.allowAnonymous: true without a password file, false with one, unless given', () => {
  assert.equal(config(['--acl-file', 'acl']).auth?.allowAnonymous, true)
  assert.equal(config(['--password-file', 'p']).auth?.allowAnonymous, false)
  assert.equal(config(['--password-file', 'p', '--allow-anonymous']).auth?.allowAnonymous, true)
})

test('--print-config redacts passwords in URLs, TLS passphrases and keys given as PEM text', () => {
  const pemKey = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n'
  const file = configFile(`listeners:
  - type: tls
    tls: { cert: server.crt, key: server.key, passphrase: hunter2 }
  - type: wss
    tls: { cert: server.crt, key: ${JSON.stringify(pemKey)} }
cluster: { redis: "redis://:s3cret@redis:6379/0", nodeId: n1 }
`)
  const resolved = resolve(['--config', file])
  const text = printConfig(resolved.config, resolved.file)
  assert.doesNotMatch(text, /hunter2|s3cret|MIGHAgEAMBMGByqGSM49/)
  const printed = parseYaml(text) as CulexConfig
  const [tls, wss] = printed.listeners
  assert.ok(tls?.type === 'tls' && wss?.type === 'wss')
  assert.equal(tls.tls.passphrase, REDACTED)
  assert.equal(tls.tls.key, path.join(path.dirname(file), 'server.key'), 'a key file name is not a secret')
  assert.equal(wss.tls.key, REDACTED)
  assert.equal(printed.cluster?.redis, 'redis://:***@redis:6379/0')
  assert.equal(printed.cluster?.nodeId, 'n1')
  assert.match(text, /^# culex: the configuration in effect/)
  // What is printed is itself a valid configuration (secrets aside).
  assert.ok(configSchema.safeParse(printed).success)
  const redis = resolve(['--persistence', 'redis://user:pw@localhost:6379/1'])
  assert.match(printConfig(redis.config, undefined), /url: redis:\/\/user:\*\*\*@localhost:6379\/1/)
})

test("LIMIT_RANGES are the broker's: it accepts each bound and refuses one past it", async () => {
  for (const [key, [min, max]] of Object.entries(LIMIT_RANGES) as Array<[keyof Limits, [number, number]]>) {
    for (const ok of [min, max]) {
      const broker = new Broker({ limits: { [key]: ok } })
      await broker.close()
    }
    assert.throws(() => new Broker({ limits: { [key]: min - 1 } }), new RegExp(`limits\\.${key} must be an integer from ${min} to ${max}`))
    if (max < Number.MAX_SAFE_INTEGER) assert.throws(() => new Broker({ limits: { [key]: max + 1 } }), new RegExp(`limits\\.${key}`))
  }
  assert.deepEqual(Object.keys(LIMIT_RANGES).sort(), Object.keys(DEFAULT_LIMITS).sort())
})

test('environment variable names: one per key, none two keys could share', () => {
  assert.equal(screamingSnake('maxQueued'), 'MAX_QUEUED')
  assert.equal(screamingSnake('maximumQoS'), 'MAXIMUM_QOS')
  assert.equal(envName(['auth', 'allowAnonymous']), 'CULEX_AUTH__ALLOW_ANONYMOUS')
  const names = envNames()
  assert.equal(new Set(names).size, names.length)
  for (const name of ['CULEX_PORT', 'CULEX_HOST', 'CULEX_LISTENERS', 'CULEX_LIMITS__MAX_QUEUED', 'CULEX_AUTH__PASSWORD_FILE', 'CULEX_PROTECTION__FLAPPING__BAN_MS', 'CULEX_PERSISTENCE__DURABILITY', 'CULEX_DRAIN__TIMEOUT_MS']) {
    assert.ok(names.includes(name), name)
  }
  assert.ok(!names.some((n) => n.includes('SCHEMA')))
  // Every name reads back to its own key.
  for (const name of names.filter((n) => n !== 'CULEX_PORT' && n !== 'CULEX_HOST')) {
    const { problems: found } = loadEnv({ [name]: '1' }, cwd)
    assert.deepEqual(found, [], name)
  }
  // Keys of one mapping never fold to the same name.
  const visit = (schema: Parameters<typeof objectVariants>[0]): void => {
    for (const variant of objectVariants(schema)) {
      const folded = Object.keys(variant.shape).map((k) => k.toLowerCase())
      assert.equal(new Set(folded).size, folded.length, folded.join(' '))
      for (const child of Object.values(variant.shape)) visit(child)
    }
  }
  visit(configSchema)
})

test('did you mean: edit distance, case and underscores ignored, nothing when far', () => {
  assert.equal(levenshtein('kitten', 'sitting'), 3)
  assert.equal(levenshtein('', 'abc'), 3)
  assert.equal(closest('max_queued', ['maxQueued', 'maxInflight']), 'maxQueued')
  assert.equal(closest('MaxInflite', ['maxQueued', 'maxInflight']), 'maxInflight')
  assert.equal(closest('zzz', ['maxQueued', 'maxInflight']), undefined)
})

test('culex.schema.json is what the zod schema generates (npm run config-schema)', () => {
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), configJsonSchemaText())
  const schema = JSON.parse(configJsonSchemaText()) as { properties: Record<string, unknown>; additionalProperties: boolean }
  assert.equal(schema.additionalProperties, false)
  assert.deepEqual(Object.keys(schema.properties), ['$schema', 'listeners', 'persistence', 'cluster', 'limits', 'capabilities', 'sys', 'auth', 'protection', 'http', 'bridges', 'log', 'drain'])
  // Every key says what it is, for editors.
  const undocumented: string[] = []
  const walk = (node: unknown, at: string): void => {
    if (node === null || typeof node !== 'object') return
    const n = node as Record<string, unknown>
    for (const [key, value] of Object.entries((n.properties ?? {}) as Record<string, Record<string, unknown>>)) {
      if (typeof value.description !== 'string') undocumented.push(`${at}.${key}`)
      walk(value, `${at}.${key}`)
    }
    for (const key of ['items', 'oneOf', 'anyOf']) {
      const inner = n[key]
      if (Array.isArray(inner)) inner.forEach((i) => walk(i, at))
      else walk(inner, at)
    }
  }
  walk(schema, '')
  assert.deepEqual(undocumented, [])
})

test('examples/culex.yaml is a valid configuration', () => {
  const example = new URL('../../examples/culex.yaml', import.meta.url)
  const c = config(['--config', example.pathname])
  assert.ok(c.listeners.length >= 2)
})
