/**
 * Loading ioredis on demand and opening connections from what the user gave (a URL, options or
 * a client), shared by the Redis adapter and the cluster node. Internal.
 */
import type { Redis, RedisOptions } from 'ioredis'

/** The ioredis constructor, as the package exports it (loaded on first use). */
export type RedisConstructor = new (options: RedisOptions) => Redis

let ioredis: Promise<RedisConstructor> | undefined

/** Loads ioredis on demand, so importing a module that uses it (or its types) never needs it installed; `who` names the user in the error when it is missing. */
export function loadIoredis(who = 'RedisPersistence'): Promise<RedisConstructor> {
  ioredis ??= import('ioredis').then(
    (mod) => (mod.default ?? mod.Redis) as unknown as RedisConstructor,
    (cause: unknown) => {
      ioredis = undefined
      const { code, message } = (cause ?? {}) as { code?: unknown; message?: unknown }
      // ioredis itself missing (not one of its own dependencies, whose name the message would carry instead).
      if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String(message).includes("'ioredis'")) {
        throw new Error(`${who} needs the ioredis package, which is not installed: run \`npm install ioredis\``, { cause })
      }
      throw cause
    },
  )
  return ioredis
}

/**
 * A new connection to where `given` points (default: ioredis's default, 127.0.0.1:6379) with
 * `own` settings on top; a given client is duplicated, never used or closed.
 */
export function connectRedis(Redis: RedisConstructor, given: string | RedisOptions | Redis | undefined, own: RedisOptions): Redis {
  if (given === undefined) return new Redis(own)
  if (typeof given === 'string') {
    // ioredis parses the URL when given as the first argument; the constructor type here takes options only.
    const WithUrl = Redis as unknown as new (url: string, options: RedisOptions) => Redis
    return new WithUrl(given, own)
  }
  if (isClient(given)) return given.duplicate(own)
  return new Redis({ ...given, ...own })
}

/** An ioredis client rather than options: it can duplicate itself. */
function isClient(value: RedisOptions | Redis): value is Redis {
  return typeof (value as Partial<Redis>).duplicate === 'function'
}
