/**
 * `mosquittoAuth`: the broker hooks for Mosquitto's `password_file`, `acl_file` and
 * `allow_anonymous`, so a Mosquitto deployment's files work unchanged.
 *
 * ```ts
 * import { Broker, mosquittoAuth } from 'culex-mqtt'
 * const auth = mosquittoAuth({ passwordFile: '/etc/mosquitto/passwd', aclFile: '/etc/mosquitto/acl' })
 * const broker = new Broker({ ...auth.hooks })
 * process.on('SIGHUP', () => auth.reload().catch((e) => console.error(e.message)))
 * ```
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { AuthenticateRequest, AuthenticateResult, Client, Message } from '../../hooks/types.js'
import type { BrokerOptions } from '../../options.js'
import { ConnackReturnCode } from '../../protocol/reason-codes.js'
import { aclAllows, parseAclFile, READ, WRITE, type AclRules } from './acl-file.js'
import { warmArgon2 } from './argon2.js'
import { verifyPassword } from './hashes.js'
import { parsePasswordFile, type PasswordFile } from './password-file.js'

export { MosquittoFileError } from './password-file.js'

/** Options of {@link mosquittoAuth}: Mosquitto's settings of the same names. */
export interface MosquittoAuthOptions {
  /** Path of a Mosquitto `password_file` (`mosquitto_passwd` output: `$6$`, `$7$` or `$argon2id$` hashes). */
  passwordFile?: string
  /** Path of a Mosquitto `acl_file`. */
  aclFile?: string
  /** Whether clients without a user name may connect. Default: false when passwordFile is given (as Mosquitto 2), else true. */
  allowAnonymous?: boolean
}

/** What {@link mosquittoAuth} returns. */
export interface MosquittoAuth {
  /** Spread into `new Broker({...})`: authenticate, authorizePublish, authorizeSubscribe, authorizeDeliver (only those that apply). */
  readonly hooks: Pick<BrokerOptions, 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeDeliver'>
  /** Re-reads both files; on an error keeps the rules in force and rejects with a message naming file and line. */
  reload(): Promise<void>
}

/** The rules in force: swapped as a whole by `reload`, so a check never sees half of each file. */
interface Rules {
  readonly passwords: PasswordFile | undefined
  readonly acl: AclRules | undefined
}

/**
 * Mosquitto 2.0 refuses every failed login with "not authorized" (CONNACK 5; MQTT 5: 0x87), be it
 * a wrong password, an unknown user or a refused anonymous client (`handle_connect.c`, on
 * MOSQ_ERR_AUTH), never with 4 ("bad user name or password").
 */
const REFUSED: AuthenticateResult = { reasonCode: ConnackReturnCode.NotAuthorized }

/** Reads a file for a constructor: the error names the file. */
function readSync(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    throw new Error(`${path}: cannot read: ${(error as Error).message}`, { cause: error })
  }
}

async function read(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    throw new Error(`${path}: cannot read: ${(error as Error).message}`, { cause: error })
  }
}

/** Parses both files' texts (either may be absent). */
function parse(options: MosquittoAuthOptions, passwordText: string | undefined, aclText: string | undefined): Rules {
  const passwords = passwordText === undefined ? undefined : parsePasswordFile(passwordText, options.passwordFile as string)
  const acl = aclText === undefined ? undefined : parseAclFile(aclText, options.aclFile as string)
  // Start the argon2id worker now rather than at the first CONNECT.
  if (passwords?.argon2 === true) warmArgon2()
  return { passwords, acl }
}

/**
 * The broker hooks that enforce a Mosquitto `password_file` and `acl_file`, with Mosquitto 2.0's
 * meaning (`src/security.c`, `src/security_default.c`):
 *
 * - **authenticate** (when `passwordFile` is given, or `allowAnonymous` is false): a client with a
 *   user name must be in the password file and give its password; a client without one is let in
 *   iff `allowAnonymous`. Without a password file and with `allowAnonymous: false`, no one gets in,
 *   as in Mosquitto. Refusals are CONNACK 5 / 0x87 (not authorized), as Mosquitto sends.
 * - **authorizePublish** (with `aclFile`): WRITE access to the topic; refused publishes get PUBACK
 *   0x87 (MQTT 5) or are dropped after the acknowledgement (3.1.1), as in Mosquitto.
 * - **authorizeDeliver** (with `aclFile`): READ access, per delivered message and per retained
 *   message a new subscription would get, as Mosquitto checks in `subs__send` and `retain__process`.
 * - no **authorizeSubscribe**: Mosquitto 2.0's ACL file grants every SUBSCRIBE (its ACL check
 *   returns success for MOSQ_ACL_SUBSCRIBE, marked "FIXME - implement ACL subscription strings")
 *   and filters what the subscription delivers instead.
 *
 * Without an ACL file, every authenticated client may publish and receive anything, as in
 * Mosquitto. Without a password file, user names are not checked, so the ACL's `user` blocks
 * trust whatever name a client claims (as in Mosquitto). With an ACL file, `$SYS` topics need a
 * rule of their own (`topic read $SYS/#`): `#` does not cover them. Publishing to `$SYS/...` is
 * refused by the broker itself, whatever the files say.
 *
 * Reads both files synchronously, and throws when either cannot be read or has an error (the
 * message starts with `file:line:`), as Mosquitto refuses to start.
 */
export function mosquittoAuth(options: MosquittoAuthOptions): MosquittoAuth {
  const { passwordFile, aclFile } = options
  const allowAnonymous = options.allowAnonymous ?? passwordFile === undefined
  let rules = parse(
    options,
    passwordFile === undefined ? undefined : readSync(passwordFile),
    aclFile === undefined ? undefined : readSync(aclFile),
  )
  let started = 0
  let applied = 0

  const hooks: MosquittoAuth['hooks'] = {}
  if (passwordFile !== undefined || !allowAnonymous) {
    hooks.authenticate = async (request: AuthenticateRequest): Promise<AuthenticateResult> => {
      if (request.username === undefined) return allowAnonymous ? true : REFUSED
      // Mosquitto 2.0 with no password file: user names are not checked, only allow_anonymous.
      const passwords = rules.passwords
      if (passwords === undefined) return allowAnonymous ? true : REFUSED
      const stored = passwords.users.get(request.username)
      if (stored === undefined || request.password === undefined) return REFUSED
      return (await verifyPassword(stored, request.password)) ? true : REFUSED
    }
  }
  if (aclFile !== undefined) {
    /**
     * The subject of a check. A persistent session restored from the store may have lost its
     * user name while offline (`Client.username` is then undefined): it is judged as anonymous
     * when anonymous clients may connect (such a client could ask for the same), and refused
     * otherwise, since no anonymous client can own it.
     */
    const allowed = (client: Client, topic: string, access: typeof READ | typeof WRITE): boolean => {
      const acl = rules.acl
      if (acl === undefined) return true
      if (client.username === undefined && !client.connected && !allowAnonymous) return false
      return aclAllows(acl, client, topic, access)
    }
    hooks.authorizePublish = (client: Client, message: Message) => allowed(client, message.topic, WRITE)
    hooks.authorizeDeliver = (client: Client, message: Message) => allowed(client, message.topic, READ)
  }

  return {
    hooks,
    async reload(): Promise<void> {
      const generation = ++started
      const [passwordText, aclText] = await Promise.all([
        passwordFile === undefined ? undefined : read(passwordFile),
        aclFile === undefined ? undefined : read(aclFile),
      ])
      const next = parse(options, passwordText, aclText)
      // Two reloads at once: the one started last wins, whichever finishes first.
      if (generation < applied) return
      applied = generation
      rules = next
    },
  }
}
