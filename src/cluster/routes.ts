import { parseSharedFilter } from '../routing/shared-group.js'
import { SubscriptionTrie } from '../routing/subscription-trie.js'
import type { ClusterOp } from './ops.js'

/** A node in the other nodes' routes (trie subscribers are objects). */
interface NodeRef {
  readonly id: string
}

/** A shared subscription group, with the nodes where it has members. */
interface GroupRef {
  readonly name: string
  readonly nodes: Set<string>
  /** Round-robin position among the nodes. */
  next: number
}

/** Compares stream ids (`<ms>-<seq>`) as numbers. */
export function streamIdAfter(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split('-').map(Number)
  const [bm = 0, bs = 0] = b.split('-').map(Number)
  return am > bm || (am === bm && as > bs)
}

/**
 * Which nodes have subscribers for which topic filters: this node's own interest (a count of
 * local subscriptions per filter; the first and last of each become `route` operations, committed
 * with the batch that made them), and the other nodes' interest, loaded at start and kept current
 * from the route log. A publish goes to the nodes whose interest matches its topic, and nowhere
 * else; a shared subscription group gets each message on one of the nodes where it has members.
 */
export class ClusterRoutes {
  /** The route version this node's view reflects (a batch routed with an older one is refused). */
  version = '0'
  /** The last route log entry applied. */
  logId = '0-0'
  /**
   * While set, local subscriptions come and go without route operations: a node dropping its
   * sessions as a crash would leaves its routes in Redis for whoever takes the sessions.
   */
  muted = false
  /** Whether a shared group has members on this node (a publish here picks among nodes itself then). */
  hasLocalMembers: (group: string) => boolean = () => false
  private readonly trie = new SubscriptionTrie<NodeRef | GroupRef, null>()
  private readonly nodes = new Map<string, NodeRef>()
  private readonly groups = new Map<string, GroupRef>()
  /** Every route of the other nodes, as `<node>|<filter>`. */
  private readonly fields = new Set<string>()
  private readonly own = new Map<string, number>()
  private readonly matched = new Set<string>()
  private readonly matchedGroups: string[] = []
  private readonly result = { nodes: this.matched, groups: this.matchedGroups }
  private readonly collect = (target: NodeRef | GroupRef): void => {
    if ('id' in target) this.matched.add(target.id)
    else if (!this.hasLocalMembers(target.name)) this.matchedGroups.push(target.name)
  }

  constructor(
    readonly self: string,
    private readonly record: (op: ClusterOp) => void,
  ) {}

  /** Replaces the view of the other nodes' routes with a snapshot. */
  load(version: string, logId: string, fields: readonly string[]): void {
    for (const field of [...this.fields]) this.change(false, field)
    for (const field of fields) if (!field.startsWith(this.self + '|')) this.change(true, field)
    this.version = version
    this.logId = logId
  }

  /**
   * Applies a route log entry (once: entries at or before `logId` are skipped). Returns false
   * when entries are missing between the last applied and this one (the log was trimmed past
   * this node): the caller loads a snapshot.
   */
  apply(id: string, version: string, changes: string): boolean {
    if (!streamIdAfter(id, this.logId)) return true
    if (Number(version) > Number(this.version) + 1) return false
    for (const change of changes.split('\0')) {
      if (change === '') continue
      const field = change.slice(1)
      if (field.startsWith(this.self + '|')) continue
      this.change(change[0] === '1', field)
    }
    this.version = version
    this.logId = id
    return true
  }

  /**
   * The other nodes with a (non-shared) subscription matching `topic`, and the shared groups
   * matching it that have members on other nodes only (a group with members here picks a node
   * itself, as the message is routed here). Both are reused by the next call.
   */
  match(topic: string): { readonly nodes: Set<string>; readonly groups: string[] } {
    // Set.clear() allocates a new table even when the set is empty: only when needed.
    if (this.matched.size > 0) this.matched.clear()
    if (this.matchedGroups.length > 0) this.matchedGroups.length = 0
    // A node whose peers have no subscribers at all pays nothing more per message.
    if (this.fields.size > 0) this.trie.match(topic, this.collect)
    return this.result
  }

  /**
   * The node (this one included, when `local`) that gets the next message of a shared group:
   * round-robin over the nodes where it has members. Undefined when it has none anywhere.
   */
  pickShared(name: string, local: boolean, except?: string): string | undefined {
    const group = this.groups.get(name)
    const candidates = group === undefined ? [] : [...group.nodes].filter((n) => n !== except)
    if (local && except !== this.self) candidates.push(this.self)
    if (candidates.length === 0) return undefined
    candidates.sort()
    const ref = group ?? { next: 0 }
    const node = candidates[ref.next % candidates.length] as string
    ref.next = (ref.next + 1) % 1_000_000
    return node
  }

  /** One more local subscription to `filter`: the first one starts this node's interest. */
  add(filter: string): void {
    const n = this.own.get(filter) ?? 0
    this.own.set(filter, n + 1)
    if (n === 0 && !this.muted) this.record({ op: 'route', filter, present: true })
  }

  /** One local subscription to `filter` fewer: the last one ends this node's interest. */
  remove(filter: string): void {
    const n = this.own.get(filter) ?? 0
    if (n <= 1) {
      this.own.delete(filter)
      if (n === 1 && !this.muted) this.record({ op: 'route', filter, present: false })
      return
    }
    this.own.set(filter, n - 1)
  }

  private change(present: boolean, field: string): void {
    const bar = field.indexOf('|')
    const node = field.slice(0, bar)
    const filter = field.slice(bar + 1)
    if (present === this.fields.has(field)) return
    if (present) this.fields.add(field)
    else this.fields.delete(field)
    const shared = parseSharedFilter(filter)
    if (shared !== null) {
      let group = this.groups.get(filter)
      if (group === undefined) {
        if (!present) return
        group = { name: filter, nodes: new Set(), next: 0 }
        this.groups.set(filter, group)
        this.trie.add(shared.filter, group, null)
      }
      if (present) group.nodes.add(node)
      else group.nodes.delete(node)
      if (group.nodes.size === 0) {
        this.groups.delete(filter)
        this.trie.remove(shared.filter, group)
      }
      return
    }
    let ref = this.nodes.get(node)
    if (ref === undefined) {
      ref = { id: node }
      this.nodes.set(node, ref)
    }
    if (present) this.trie.add(filter, ref, null)
    else this.trie.remove(filter, ref)
  }
}
