/**
 * Mosquitto's `acl_file`: reading it, and deciding READ and WRITE access from it, as Mosquitto
 * 2.0 does (`src/security_default.c`: `aclfile__parse`, `add__acl`, `add__acl_pattern`,
 * `acl__find_acls`, `mosquitto_acl_check_default`).
 *
 * ```
 * # Before any `user` line: rules for clients without a user name.
 * topic read public/#
 * user alice
 * topic readwrite alice/#
 * topic deny alice/secret
 * # Patterns apply to every client, wherever they stand in the file.
 * pattern write clients/%c/status
 * pattern read users/%u/#
 * ```
 */
import { isValidTopicFilter, topicMatches } from '../../protocol/topics.js'
import { MosquittoFileError, trimBlanks } from './password-file.js'

/** The access a rule grants, as Mosquitto's `MOSQ_ACL_READ`/`MOSQ_ACL_WRITE` bits; 0 is `deny`. */
export const READ = 1
export const WRITE = 2
const NONE = 0

/** One `topic` or `pattern` line. */
export interface AclRule {
  /** The topic filter as written (for a pattern: with its `%c`/`%u` still in it). */
  readonly filter: string
  /** READ, WRITE, both, or 0 for `deny`. */
  readonly access: number
}

/** One `pattern` line, with what it needs substituted. */
export interface AclPattern extends AclRule {
  /** Holds `%u`: skipped for clients without a user name (Mosquitto: `ucount && !username`). */
  readonly usesUsername: boolean
}

/** An ACL file, read. In every list the `deny` rules come first, as Mosquitto puts them. */
export interface AclRules {
  /** `topic` lines before the first `user` line: clients without a user name; undefined if none. */
  readonly anonymous: readonly AclRule[] | undefined
  /** `topic` lines after `user <name>` (all blocks of one name together). */
  readonly users: ReadonlyMap<string, readonly AclRule[]>
  /** `pattern` lines, for every client. */
  readonly patterns: readonly AclPattern[]
}

/** Who asks: what the decision depends on. */
export interface AclSubject {
  readonly id: string
  readonly username: string | undefined
}

const ACCESS: Record<string, number> = { read: READ, write: WRITE, readwrite: READ | WRITE, deny: NONE }

/** Mosquitto trims trailing C-`isspace` characters from each line (so CRLF files read the same). */
function trimEnd(s: string): string {
  return s.replace(/[ \t\n\v\f\r]+$/, '')
}

/**
 * The next space-separated field from `from`, and where the rest of the line starts: `strtok` with
 * " " as Mosquitto uses it, so only spaces separate fields (a tab is part of a field).
 */
function field(line: string, from: number): { text: string; rest: number } | undefined {
  let start = from
  while (line.charCodeAt(start) === 0x20) start++
  if (start >= line.length) return undefined
  const space = line.indexOf(' ', start)
  const end = space === -1 ? line.length : space
  return { text: line.slice(start, end), rest: end + 1 }
}

/** Adds a rule to a list, `deny` rules at the front (Mosquitto: "Put deny acls at front of the list"). */
function add<T extends AclRule>(list: T[], rule: T): void {
  if (rule.access === NONE) list.unshift(rule)
  else list.push(rule)
}

/**
 * Parses an ACL file's text, line by line as Mosquitto does: fields are separated by spaces;
 * `topic [read|write|readwrite|deny] <filter>` (the filter is the rest of the line, spaces
 * included; with one field only, that field is the filter and the access is readwrite, so
 * `topic read` means the topic "read"); `pattern` likewise; `user <name>` (the rest of the line)
 * starts a user's block, and there is no way back to the anonymous block. Blank lines and lines
 * starting with `#` are skipped. Anything else is an error, as in Mosquitto, which then refuses to
 * start. Throws {@link MosquittoFileError}.
 */
export function parseAclFile(text: string, file: string): AclRules {
  let anonymous: AclRule[] | undefined
  const users = new Map<string, AclRule[]>()
  const patterns: AclPattern[] = []
  let user: string | undefined
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = trimEnd(lines[i] as string)
    const fail = (what: string): MosquittoFileError => new MosquittoFileError(file, i + 1, what)
    const keyword = field(line, 0)
    // Mosquitto skips only a '#' in the first column; one after spaces is a comment here too.
    if (keyword === undefined || keyword.text.startsWith('#')) continue
    if (keyword.text === 'user') {
      if (keyword.rest >= line.length) throw fail('user without a name')
      user = trimBlanks(line.slice(keyword.rest))
      continue
    }
    if (keyword.text !== 'topic' && keyword.text !== 'pattern') {
      throw fail(`unknown keyword ${JSON.stringify(keyword.text)} (expected topic, pattern or user; fields are separated by spaces)`)
    }
    const second = field(line, keyword.rest)
    if (second === undefined) throw fail(`${keyword.text} without a topic filter`)
    let access = READ | WRITE
    let filter = second.text
    if (second.rest < line.length) {
      const a = ACCESS[second.text]
      if (a === undefined) throw fail(`unknown access ${JSON.stringify(second.text)} (expected read, write, readwrite or deny)`)
      access = a
      filter = trimBlanks(line.slice(second.rest))
    }
    // Mosquitto checks the filter as a subscription's (`mosquitto_sub_topic_check`), %c/%u included.
    if (!isValidTopicFilter(filter)) throw fail(`invalid topic filter ${JSON.stringify(filter)}`)
    if (keyword.text === 'pattern') {
      add(patterns, { filter, access, usesUsername: filter.includes('%u') })
    } else if (user === undefined) {
      add((anonymous ??= []), { filter, access })
    } else {
      let list = users.get(user)
      if (list === undefined) users.set(user, (list = []))
      add(list, { filter, access })
    }
  }
  return { anonymous, users, patterns }
}

/** The first verdict a list gives: false at a matching `deny`, true at a matching grant, undefined at none. */
function decide(rules: readonly AclRule[], filterOf: (rule: AclRule) => string, topic: string, access: number): boolean | undefined {
  for (const rule of rules) {
    if (!topicMatches(filterOf(rule), topic)) continue
    if (rule.access === NONE) return false
    if ((rule.access & access) !== 0) return true
  }
  return undefined
}

/** Replaces `%c` and `%u` in a pattern, left to right, as Mosquitto's copy loop does. */
function substitute(filter: string, subject: AclSubject): string {
  return filter.replace(/%[cu]/g, (m) => (m === '%c' ? subject.id : (subject.username ?? m)))
}

/**
 * Whether `subject` may READ (receive) or WRITE (publish) `topic`, as Mosquitto 2.0 decides it
 * (`mosquitto_acl_check_default`):
 * 1. The client's own list: its user's `topic` lines, or the anonymous ones when it has no user
 *    name. With no such list and no patterns at all, everything is denied.
 * 2. That list, deny rules first: a matching `deny` denies, a matching rule with the access grants.
 * 3. Only then the patterns, after `%c`/`%u` substitution, deny rules first. A client whose id or
 *    user name holds `+` or `#` is denied here, since substituting it would widen the filter (a
 *    `/` is not refused). So a `pattern ... deny` cannot take back what a user's `topic` line granted.
 * 4. Anything else is denied.
 * Topics starting with `$` match only filters starting with `$` (`#` does not cover `$SYS`).
 */
export function aclAllows(rules: AclRules, subject: AclSubject, topic: string, access: typeof READ | typeof WRITE): boolean {
  const own = subject.username === undefined ? rules.anonymous : rules.users.get(subject.username)
  if (own === undefined && rules.patterns.length === 0) return false
  if (own !== undefined) {
    const verdict = decide(own, (rule) => rule.filter, topic, access)
    if (verdict !== undefined) return verdict
  }
  if (rules.patterns.length === 0) return false
  if (/[+#]/.test(subject.id) || (subject.username !== undefined && /[+#]/.test(subject.username))) return false
  const applicable = subject.username === undefined ? rules.patterns.filter((p) => !p.usesUsername) : rules.patterns
  return decide(applicable, (rule) => substitute(rule.filter, subject), topic, access) ?? false
}
