import path from 'node:path'
import type { PersistenceAdapter } from '../persistence/adapter.js'
import { MemoryPersistence } from '../persistence/memory.js'
import type { RedisPersistence, RedisPersistenceOptions } from '../persistence/redis.js'
import type { SqlitePersistence, SqlitePersistenceOptions } from '../persistence/sqlite.js'
import { firstLine, StartupError, UsageError } from './errors.js'

/** `--durability` of the SQLite adapter: commits survive a crash of the process, or power loss too (slower). */
export type Durability = NonNullable<SqlitePersistenceOptions['durability']>

/** What `--persistence` (with `--durability`, `--redis-strict`) asked for. */
export type PersistenceSpec =
  | { kind: 'memory' }
  | { kind: 'sqlite'; path: string; durability?: Durability }
  | { kind: 'redis'; url: string; strict: boolean }

/** The accepted values, for error messages. */
export const PERSISTENCE_FORMS = 'memory, sqlite:PATH, redis://HOST[:PORT][/DB] or rediss://HOST[:PORT][/DB]'

function invalid(value: string, why = ''): UsageError {
  return new UsageError(`invalid --persistence ${JSON.stringify(value)}${why}: expected ${PERSISTENCE_FORMS}`)
}

/** Parses the value of `--persistence`; a relative SQLite path is resolved against `cwd`. */
export function parsePersistence(value: string, cwd: string = process.cwd()): PersistenceSpec {
  if (value === 'memory') return { kind: 'memory' }
  if (value.startsWith('sqlite:')) {
    const file = value.slice('sqlite:'.length)
    if (file === '') throw invalid(value, ' (no path after sqlite:)')
    return { kind: 'sqlite', path: path.resolve(cwd, file) }
  }
  if (/^rediss?:/i.test(value)) {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      throw invalid(value, ' (not a valid URL)')
    }
    if (url.hostname === '') throw invalid(value, ' (no host)')
    if (!/^(\/(\d+)?)?$/.test(url.pathname)) throw invalid(value, ' (the database after the host must be a number)')
    if (url.hash !== '') throw invalid(value)
    return { kind: 'redis', url: value, strict: false }
  }
  throw invalid(value)
}

/** A Redis URL as printed: without its password. */
export function redactUrl(value: string): string {
  const url = new URL(value)
  if (url.password === '') return value
  url.password = '***'
  return url.href
}

/** The adapters loaded on demand, so that users of one never need the package of another. */
interface AdapterModule {
  /** Relative to this file, as compiled to dist/cli/ and run from src/cli/ alike. */
  specifier: string
  exportName: string
  dependency: string
  what: string
}

// Not `as const`: with a literal type TypeScript would resolve the specifiers, and an adapter's
// module, or its package, may be absent.
const SQLITE: AdapterModule = { specifier: '../persistence/sqlite.js', exportName: 'SqlitePersistence', dependency: 'better-sqlite3', what: 'SQLite' }
const REDIS: AdapterModule = { specifier: '../persistence/redis.js', exportName: 'RedisPersistence', dependency: 'ioredis', what: 'Redis' }

// Types only (erased at compile time): the modules themselves load on demand, below.
type SqliteConstructor = typeof SqlitePersistence
type RedisConstructor = typeof RedisPersistence

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/** The error and its causes, outermost first: adapters wrap what went wrong. */
function chain(error: unknown): unknown[] {
  const errors = [error]
  for (let e = error; e instanceof Error && e.cause !== undefined && errors.length < 8; e = e.cause) errors.push(e.cause)
  return errors
}

/** Says why an adapter could not be loaded or created, in one line, with what to do about it. */
function explain(adapter: AdapterModule, kind: string, error: unknown): string {
  const message = firstLine(error)
  const dependency = adapter.dependency
  if (chain(error).some((e) => isNotFound(e) && firstLine(e).includes(`'${dependency}'`))) {
    return `--persistence ${kind} needs the ${dependency} package, which is not installed: npm install ${dependency}`
  }
  if (isNotFound(error) && message.includes(adapter.specifier.replace(/^\.\.\//, '').replace(/\.js$/, ''))) {
    return `this culex has no ${adapter.what} adapter (${message})`
  }
  return `cannot load the ${adapter.what} adapter: ${message}`
}

async function load(adapter: AdapterModule, kind: string): Promise<unknown> {
  let loaded: Record<string, unknown>
  try {
    loaded = (await import(adapter.specifier)) as Record<string, unknown>
  } catch (error) {
    throw new StartupError(explain(adapter, kind, error))
  }
  const constructor = loaded[adapter.exportName]
  if (typeof constructor !== 'function') throw new StartupError(`this culex has no ${adapter.what} adapter: ${adapter.specifier} does not export ${adapter.exportName}`)
  // The adapters load their package lazily (the Redis one only when the broker opens it): check
  // now, so that a missing package is reported before anything starts.
  try {
    await import(adapter.dependency)
  } catch (error) {
    throw new StartupError(explain(adapter, kind, error))
  }
  return constructor
}

function create(adapter: AdapterModule, kind: string, make: () => PersistenceAdapter, where: string): PersistenceAdapter {
  try {
    return make()
  } catch (error) {
    const why = explain(adapter, kind, error)
    throw new StartupError(why.startsWith('cannot load') ? `cannot open ${where}: ${firstLine(error)}` : why)
  }
}

/** An adapter made from the command line. */
export interface CliPersistence {
  adapter: PersistenceAdapter
  /** What it is, for error messages: `memory`, `sqlite:/abs/path`, the Redis URL without its password. */
  label: string
  /** The label and whether it is durable, for the `culex: persistence ...` line. */
  description: string
}

/** The adapter `spec` asks for; a missing module or package is a StartupError saying what to install. */
export async function createPersistence(spec: PersistenceSpec): Promise<CliPersistence> {
  const made = (adapter: PersistenceAdapter, label: string, ...notes: string[]): CliPersistence => ({
    adapter,
    label,
    description: `${label} (${[adapter.durable ? 'durable' : 'not durable', ...notes].join(', ')})`,
  })
  switch (spec.kind) {
    case 'memory':
      return made(new MemoryPersistence(), 'memory')
    case 'sqlite': {
      const Sqlite = (await load(SQLITE, 'sqlite')) as SqliteConstructor
      const options: SqlitePersistenceOptions = { path: spec.path }
      if (spec.durability !== undefined) options.durability = spec.durability
      const label = `sqlite:${spec.path}`
      const adapter = create(SQLITE, 'sqlite', () => new Sqlite(options), `SQLite database ${spec.path}`)
      return made(adapter, label, ...(spec.durability === undefined ? [] : [`durability ${spec.durability}`]))
    }
    case 'redis': {
      const Redis = (await load(REDIS, 'redis')) as RedisConstructor
      // Its warnings (Redis not configured to fsync every write) on culex's stderr, as culex's.
      const options: RedisPersistenceOptions = { redis: spec.url, onWarning: (message) => console.error(`culex: warning: ${message}`) }
      if (spec.strict) options.strict = true
      const label = redactUrl(spec.url)
      const adapter = create(REDIS, 'redis', () => new Redis(options), `Redis ${label}`)
      return made(adapter, label, ...(spec.strict ? ['strict'] : []))
    }
  }
}

/** `--cluster` needs ioredis: checked before anything starts, like the adapters' packages. */
export async function requireIoredis(): Promise<void> {
  try {
    await import('ioredis')
  } catch (error) {
    if (chain(error).some((e) => isNotFound(e) && firstLine(e).includes("'ioredis'"))) {
      throw new StartupError('--cluster needs the ioredis package, which is not installed: npm install ioredis')
    }
    throw error
  }
}
