/**
 * Mosquitto's `password_file`: one `user:hash` a line, as `mosquitto_passwd` writes it
 * (Mosquitto 2.0 `src/security_default.c` `pwfile__parse`).
 */
import { parseHash, type PasswordHash } from './hashes.js'

/** A password file, read: each user name with its hash. */
export interface PasswordFile {
  readonly users: ReadonlyMap<string, PasswordHash>
  /** Whether a line uses argon2id (so hash-wasm is needed). */
  readonly argon2: boolean
}

/** An error in a Mosquitto password or ACL file; its message is `file:line: what`. */
export class MosquittoFileError extends Error {
  override readonly name = 'MosquittoFileError'
  constructor(
    readonly file: string,
    readonly line: number,
    what: string,
  ) {
    super(`${file}:${line}: ${what}`)
  }
}

/** The longest user name or hash Mosquitto takes: an MQTT string's 65,535 bytes. */
const MAX_FIELD = 65535

/** Mosquitto's `misc__trimblanks` trims C `isspace` characters, which JavaScript's `trim` outdoes. */
export function trimBlanks(s: string): string {
  return s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '')
}

/**
 * Parses a password file's text. Blank lines and lines starting with `#` are skipped; user name
 * and hash are trimmed of blanks, as Mosquitto does.
 *
 * Stricter than Mosquitto where it would quietly drop or guess: a line without `:`, with an empty
 * user name or hash, with more than one `:`, with a hash it cannot decode, or naming a user twice
 * is an error here (Mosquitto skips such lines, or removes the user with a log line, or keeps both
 * entries of a repeated user and finds either). Throws {@link MosquittoFileError}.
 */
export function parsePasswordFile(text: string, file: string): PasswordFile {
  const users = new Map<string, PasswordHash>()
  let argon2 = false
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    const lineNo = i + 1
    const fail = (what: string): MosquittoFileError => new MosquittoFileError(file, lineNo, what)
    const content = trimBlanks(line)
    if (content === '' || content.startsWith('#')) continue
    const colon = line.indexOf(':')
    if (colon === -1) throw fail('expected user:hash')
    const user = trimBlanks(line.slice(0, colon))
    const encoded = trimBlanks(line.slice(colon + 1))
    if (user === '') throw fail('empty user name')
    if (encoded === '') throw fail(`no password hash for user ${JSON.stringify(user)}`)
    if (encoded.includes(':')) throw fail(`more than one ':' in the line of user ${JSON.stringify(user)}`)
    if (Buffer.byteLength(user) > MAX_FIELD) throw fail('user name longer than 65,535 bytes')
    if (Buffer.byteLength(encoded) > MAX_FIELD) throw fail('password hash longer than 65,535 bytes')
    if (users.has(user)) throw fail(`user ${JSON.stringify(user)} appears twice`)
    const hash = parseHash(encoded)
    if (typeof hash === 'string') throw fail(`user ${JSON.stringify(user)}: ${hash}`)
    users.set(user, hash)
    if (hash.kind === 'argon2id') argon2 = true
  }
  return { users, argon2 }
}
