/**
 * The password hashes of Mosquitto's `password_file`: parsing one encoded hash, and checking a
 * password against it off the event loop where the work is heavy.
 *
 * Formats (Mosquitto 2.0 `src/security_default.c` `unpwd__decode_passwords`, 2.1
 * `libcommon/password_common.c` `mosquitto_pw_decode`):
 * - `$6$<salt>$<hash>`: SHA-512(password ‖ salt), from Mosquitto 1.x;
 * - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a 64-byte key (2.0's default);
 * - `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`: a PHC string (2.1's default).
 *
 * Salt and hash are standard base64; the hash of `$6$`/`$7$` is always 64 bytes.
 */
import { createHash, pbkdf2, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { argon2idHash } from './argon2.js'

const pbkdf2Async = promisify(pbkdf2)

/** One decoded password hash. */
export type PasswordHash =
  | { readonly kind: 'sha512'; readonly salt: Buffer; readonly hash: Buffer }
  | { readonly kind: 'pbkdf2-sha512'; readonly iterations: number; readonly salt: Buffer; readonly hash: Buffer }
  | {
      readonly kind: 'argon2id'
      readonly memorySize: number
      readonly iterations: number
      readonly parallelism: number
      readonly salt: Buffer
      readonly hash: Buffer
    }

/** SHA-512 output: the only hash length `$6$` and `$7$` lines may hold. */
const SHA512_BYTES = 64
/** Padded base64, as Mosquitto writes it (OpenSSL's encoder). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
/** Unpadded base64, as PHC strings carry it. */
const BASE64_UNPADDED = /^[A-Za-z0-9+/]+$/
const ARGON2ID = /^\$argon2id\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$([^$]+)\$([^$]+)$/
/** Argon2 version 1.3, the only one hash-wasm computes (and the one `mosquitto_passwd` 2.1 writes). */
const ARGON2_VERSION = 19

/** Decodes strict base64, or returns undefined. Node's own decoder skips bad characters silently. */
function base64(text: string, padded: boolean): Buffer | undefined {
  if (text.length === 0 || !(padded ? BASE64 : BASE64_UNPADDED).test(text)) return undefined
  return Buffer.from(text, 'base64')
}

/** A whole decimal number in `[min, max]`, or undefined. */
function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined
  const n = Number(text)
  return n >= min && n <= max ? n : undefined
}

/**
 * Decodes one hash as it follows `user:` in a password file. Returns the reason as a string when
 * it is not one of the three formats.
 *
 * Mosquitto 2.0 insists on a 12-byte salt and 2.1 on 12 or 64 bytes; any non-empty salt is taken
 * here, so files from other tools that follow the same definitions load too.
 */
export function parseHash(encoded: string): PasswordHash | string {
  if (encoded.startsWith('$argon2id$')) return parseArgon2id(encoded)
  const parts = encoded.split('$')
  // '$6$salt$hash' splits to ['', '6', salt, hash]; '$7$n$salt$hash' to ['', '7', n, salt, hash].
  if (parts[0] !== '' || (parts[1] !== '6' && parts[1] !== '7')) {
    return 'unknown password hash type (expected $6$, $7$ or $argon2id$)'
  }
  const sha512 = parts[1] === '6'
  if (parts.length !== (sha512 ? 4 : 5)) return `malformed $${parts[1]}$ hash`
  let iterations = 0
  if (!sha512) {
    // Mosquitto refuses a count below 1 (`u->iterations < 1`).
    const n = integer(parts[2] as string, 1, 0x7fffffff)
    if (n === undefined) return `bad iteration count ${JSON.stringify(parts[2])}`
    iterations = n
  }
  const salt = base64(parts[sha512 ? 2 : 3] as string, true)
  if (salt === undefined) return 'the salt is not base64'
  const hash = base64(parts[sha512 ? 3 : 4] as string, true)
  if (hash === undefined) return 'the hash is not base64'
  if (hash.length !== SHA512_BYTES) return `the hash is ${hash.length} bytes, not ${SHA512_BYTES}`
  return sha512 ? { kind: 'sha512', salt, hash } : { kind: 'pbkdf2-sha512', iterations, salt, hash }
}

/** An argon2id PHC string, checked when the file is read rather than at the first CONNECT. */
function parseArgon2id(encoded: string): PasswordHash | string {
  const m = ARGON2ID.exec(encoded)
  if (m === null) return 'malformed $argon2id$ hash (expected $argon2id$v=19$m=..,t=..,p=..$salt$hash)'
  const [, v, mem, t, p, saltText, hashText] = m as unknown as [string, string, string, string, string, string, string]
  if (Number(v) !== ARGON2_VERSION) return `argon2 version ${v} is not supported (only v=19)`
  const parallelism = integer(p, 1, 0xffffff)
  const iterations = integer(t, 1, 0xffffffff)
  // The memory must be at least 8 KiB per lane (RFC 9106, section 3.1).
  const memorySize = parallelism === undefined ? undefined : integer(mem, 8 * parallelism, 0xffffffff)
  if (parallelism === undefined || iterations === undefined || memorySize === undefined) return 'bad argon2id parameters'
  const salt = base64(saltText, false)
  const hash = base64(hashText, false)
  if (salt === undefined || salt.length < 8) return 'the argon2id salt is not base64 of 8 bytes or more'
  if (hash === undefined || hash.length < 4) return 'the argon2id hash is not base64 of 4 bytes or more'
  return { kind: 'argon2id', memorySize, iterations, parallelism, salt, hash }
}

/**
 * Whether `password` matches. `$7$` runs on the libuv threadpool (async `crypto.pbkdf2`), so a
 * file with a high iteration count does not stall other clients; `$6$` is one SHA-512; argon2id
 * runs in Node's own argon2 or in a worker thread (argon2.ts). The final comparison takes the same time wherever the bytes
 * differ (`timingSafeEqual`).
 *
 * The whole password is hashed. (Mosquitto hashes it as a C string, so it stops at a zero byte.)
 */
export async function verifyPassword(stored: PasswordHash, password: Buffer): Promise<boolean> {
  let computed: Buffer
  switch (stored.kind) {
    case 'sha512':
      computed = createHash('sha512').update(password).update(stored.salt).digest()
      break
    case 'pbkdf2-sha512':
      computed = await pbkdf2Async(password, stored.salt, stored.iterations, SHA512_BYTES, 'sha512')
      break
    case 'argon2id':
      computed = await argon2idHash({
        password,
        salt: stored.salt,
        iterations: stored.iterations,
        parallelism: stored.parallelism,
        memorySize: stored.memorySize,
        hashLength: stored.hash.length,
      })
      break
  }
  return computed.length === stored.hash.length && timingSafeEqual(computed, stored.hash)
}
