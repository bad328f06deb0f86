// parseCliArgs, flag by flag: --persistence and its companions, and one flag per limit.
import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'
import { parseCliArgs, USAGE, UsageError } from '../../src/cli/args.js'
import { kebabCase, LIMIT_FLAGS, renameLimitsInMessage } from '../../src/cli/limits.js'
import { redactUrl } from '../../src/cli/persistence.js'
import { DEFAULT_LIMITS } from '../../src/options.js'

const cwd = path.resolve('/srv/culex')

function parse(...argv: string[]): ReturnType<typeof parseCliArgs> {
  return parseCliArgs(argv, cwd)
}

function rejects(argv: string[], message: RegExp): void {
  assert.throws(() => parseCliArgs(argv, cwd), (error: unknown) => {
    assert.ok(error instanceof UsageError, `a UsageError, got ${String(error)}`)
    assert.match(error.message, message)
    return true
  })
}

const FORMS = /expected memory, sqlite:PATH, redis:\/\/HOST\[:PORT\]\[\/DB\] or rediss:\/\/HOST\[:PORT\]\[\/DB\]/

test('with no flags: nothing set (the configuration and its defaults decide: port 1883, every address, memory persistence)', () => {
  assert.deepEqual(parse(), {
    port: undefined,
    host: undefined,
    help: false,
    persistence: undefined,
    limits: {},
    cluster: undefined,
    config: undefined,
    testConfig: false,
    printConfig: false,
    settings: [],
  })
})

test('--cluster with --node-id and --cluster-lease-ms; refused with --persistence or a bad URL, id or lease', () => {
  assert.deepEqual(parse('--cluster', 'redis://127.0.0.1:6379/0', '--node-id', 'n1', '--cluster-lease-ms', '2000').cluster, {
    redis: 'redis://127.0.0.1:6379/0',
    nodeId: 'n1',
    leaseMs: 2000,
  })
  assert.deepEqual(parse('--cluster', 'redis://h').cluster, { redis: 'redis://h', nodeId: undefined, leaseMs: undefined })
  rejects(['--cluster', 'redis://h', '--persistence', 'memory'], /--cluster keeps sessions .* do not give --persistence/)
  rejects(['--cluster', 'redis://h', '--persistence', 'redis://h'], /do not give --persistence/)
  rejects(['--cluster', 'http://h'], /invalid --cluster "http:\/\/h": expected redis:\/\//)
  rejects(['--cluster', 'redis://h', '--node-id', 'a b'], /invalid --node-id "a b"/)
  rejects(['--cluster', 'redis://h', '--cluster-lease-ms', '10'], /invalid --cluster-lease-ms "10"/)
  rejects(['--node-id', 'n1'], /apply to --cluster only/)
})

test('-p/--port, --host and -h/--help parse as before', () => {
  assert.equal(parse('-p', '1884').port, 1884)
  assert.equal(parse('--port', '0').port, 0)
  assert.equal(parse('--host', '127.0.0.1').host, '127.0.0.1')
  assert.equal(parse('-h').help, true)
  assert.equal(parse('--help').help, true)
  rejects(['--port', '65536'], /invalid port "65536"/)
  rejects(['-h', '::1'], /-h is --help; to bind an address use --host ::1/)
})

test('--persistence memory', () => {
  assert.deepEqual(parse('--persistence', 'memory').persistence, { kind: 'memory' })
})

test('--persistence sqlite:PATH resolves the path against the working directory', () => {
  assert.deepEqual(parse('--persistence', 'sqlite:data/culex.db').persistence, { kind: 'sqlite', path: path.join(cwd, 'data', 'culex.db') })
  assert.deepEqual(parse('--persistence=sqlite:/var/lib/culex.db').persistence, { kind: 'sqlite', path: path.resolve('/var/lib/culex.db') })
})

test('--persistence redis://HOST:PORT[/DB] and rediss:// keep the URL as given', () => {
  for (const url of ['redis://localhost:6379', 'redis://10.0.0.5:6380/2', 'redis://redis', 'rediss://cache.example.com:6380/0', 'redis://:secret@[::1]:6379/1']) {
    assert.deepEqual(parse('--persistence', url).persistence, { kind: 'redis', url, strict: false }, url)
  }
})

test('a Redis password is not printed', () => {
  assert.equal(redactUrl('redis://:secret@localhost:6379/1'), 'redis://:***@localhost:6379/1')
  assert.equal(redactUrl('redis://localhost:6379'), 'redis://localhost:6379')
})

test('any other --persistence value is a usage error naming the accepted forms', () => {
  for (const value of ['', 'sqlite', 'sqlite:', 'Memory', 'memory:', 'mysql://localhost', 'redis://', 'redis://localhost:6379/zero', 'redis://localhost:99999', 'file.db']) {
    rejects(['--persistence', value], new RegExp(`invalid --persistence ${JSON.stringify(value).replace(/[/\\^$*+?.()|[\]{}]/g, '\\$&')}.*${FORMS.source}`))
  }
  rejects(['--persistence'], /--persistence <value>' argument missing/)
})

test('--durability process|power goes with sqlite only', () => {
  assert.deepEqual(parse('--persistence', 'sqlite:x.db', '--durability', 'power').persistence, { kind: 'sqlite', path: path.join(cwd, 'x.db'), durability: 'power' })
  assert.deepEqual(parse('--durability', 'process', '--persistence', 'sqlite:x.db').persistence, { kind: 'sqlite', path: path.join(cwd, 'x.db'), durability: 'process' })
  rejects(['--persistence', 'sqlite:x.db', '--durability', 'disk'], /invalid --durability "disk": expected process or power/)
  rejects(['--durability', 'power'], /--durability applies to --persistence sqlite:PATH only/)
  rejects(['--persistence', 'redis://localhost', '--durability', 'power'], /--durability applies to --persistence sqlite:PATH only/)
})

test('--redis-strict goes with redis only', () => {
  assert.deepEqual(parse('--persistence', 'redis://localhost:6379', '--redis-strict').persistence, { kind: 'redis', url: 'redis://localhost:6379', strict: true })
  rejects(['--redis-strict'], /--redis-strict applies to --persistence redis:\/\/\.\.\. only/)
  rejects(['--persistence', 'sqlite:x.db', '--redis-strict'], /--redis-strict applies/)
})

test('every key of DEFAULT_LIMITS has a kebab-case flag, and only those', () => {
  assert.deepEqual(
    LIMIT_FLAGS.map((f) => f.key),
    Object.keys(DEFAULT_LIMITS),
  )
  for (const flag of LIMIT_FLAGS) {
    assert.equal(flag.name, kebabCase(flag.key))
    assert.equal(flag.default, DEFAULT_LIMITS[flag.key])
    assert.match(flag.name, /^[a-z]+(-[a-z]+)*$/)
  }
  const names = LIMIT_FLAGS.map((f) => f.name)
  for (const name of ['max-queued', 'max-inflight', 'max-connections', 'connect-timeout-ms', 'max-queued-bytes', 'persistent-session-expiry']) {
    assert.ok(names.includes(name), `--${name} among ${names.join(' ')}`)
  }
})

for (const flag of LIMIT_FLAGS) {
  test(`--${flag.name} sets limits.${flag.key}; a non-integer is a usage error naming it`, () => {
    assert.deepEqual(parse(`--${flag.name}`, '7').limits, { [flag.key]: 7 })
    assert.deepEqual(parse(`--${flag.name}=0`).limits, { [flag.key]: 0 })
    assert.deepEqual(parse(`--${flag.name}`, '0xffffffff').limits, { [flag.key]: 0xffffffff })
    for (const bad of ['abc', '1.5', '1e3', '', ' 5', '-1', '9007199254740993']) {
      rejects([`--${flag.name}=${bad}`], new RegExp(`^--${flag.name} expects a non-negative integer, got `))
    }
    // A negative number after a space reads as an option: parseArgs says so, naming the flag.
    rejects([`--${flag.name}`, '-1'], new RegExp(`Option '--${flag.name}' argument is ambiguous`))
  })
}

test('several limits at once, with the other flags', () => {
  const options = parse('--max-queued', '5', '--max-inflight', '10', '--port', '0', '--connect-timeout-ms', '2500', '--persistence', 'memory')
  assert.deepEqual(options.limits, { maxQueued: 5, maxInflight: 10, connectTimeoutMs: 2500 })
  assert.equal(options.port, 0)
})

test('an unknown flag is a usage error', () => {
  rejects(['--max-queue', '5'], /Unknown option '--max-queue'/)
})

test('the broker\'s limit errors name the flag', () => {
  assert.equal(renameLimitsInMessage('limits.maxInflight must be an integer from 1 to 65535, got 0'), '--max-inflight must be an integer from 1 to 65535, got 0')
  assert.equal(renameLimitsInMessage('limits.unknownThing is odd'), 'limits.unknownThing is odd')
})

test('the usage lists every limit flag with its default', () => {
  for (const flag of LIMIT_FLAGS) {
    assert.match(USAGE, new RegExp(`^ {2}--${flag.name} <n> +.*\\(default ${flag.default}\\b`, 'm'), `--${flag.name}`)
  }
  assert.match(USAGE, /^ {6}--persistence <store>$/m)
  assert.match(USAGE, /^ {6}--durability <process\|power>$/m)
  assert.match(USAGE, /^ {6}--redis-strict +/m)
})
