import { createRequire } from 'node:module'
import type BetterSqlite3 from 'better-sqlite3'

/** The better-sqlite3 connection type, kept internal so the public declarations never need its typings. */
export type Database = BetterSqlite3.Database
/** A prepared better-sqlite3 statement taking positional parameters. */
export type Statement = BetterSqlite3.Statement<unknown[]>
type DatabaseConstructor = typeof BetterSqlite3

const INSTALL_HINT = 'run `npm install better-sqlite3`'

let cached: DatabaseConstructor | undefined

/**
 * Loads better-sqlite3 on first use rather than at import, so that importing `culex-mqtt/sqlite`
 * (for its types, or next to another adapter) works where the optional peer dependency is absent.
 * `load` is only passed by tests, to resolve from a directory without it.
 */
export function loadBetterSqlite3(load?: NodeJS.Require): DatabaseConstructor {
  if (load !== undefined) return requireDriver(load)
  return (cached ??= requireDriver(createRequire(import.meta.url)))
}

function requireDriver(require: NodeJS.Require): DatabaseConstructor {
  try {
    // Named `require` so tools that look for a package's imports (and the package test) see this one.
    return require('better-sqlite3') as DatabaseConstructor
  } catch (err) {
    if (isModuleNotFound(err, 'better-sqlite3')) {
      throw new Error(`SqlitePersistence needs the better-sqlite3 package, which is not installed: ${INSTALL_HINT}`, { cause: err })
    }
    throw new Error(`SqlitePersistence could not load better-sqlite3 (${String(err)}); reinstall it: ${INSTALL_HINT}`, { cause: err })
  }
}

/**
 * Opens a connection. better-sqlite3 loads its native addon only here, so an addon built for
 * another Node.js version fails here and gets its own hint.
 */
export function connect(file: string): Database {
  const Driver = loadBetterSqlite3()
  try {
    // No busy timeout: a store held by another broker must fail at once, not after 5 s of waiting.
    return new Driver(file, { timeout: 0 })
  } catch (err) {
    if (isAddonLoadFailure(err)) {
      throw new Error(`SqlitePersistence could not load better-sqlite3's native module (${String(err)}); rebuild it for this Node.js: run \`npm rebuild better-sqlite3\` (or \`npm install better-sqlite3\`)`, { cause: err })
    }
    throw err
  }
}

function isModuleNotFound(err: unknown, name: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && err.message.includes(`'${name}'`)
}

function isAddonLoadFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  return /bindings file|NODE_MODULE_VERSION|better_sqlite3\.node|invalid ELF header|wrong ELF class/i.test(err.message)
}
