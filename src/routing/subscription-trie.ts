import { isValidTopicFilter } from '../protocol/topics.js'

/**
 * The subscriptions of one filter. Most filters have a single subscriber (a device's own topic),
 * kept in two fields: a Map, made from the second subscriber on, costs about 180 bytes even
 * when it holds one entry.
 */
class Entries<S, O> {
  private one: S | null
  private oneOptions: O | undefined
  private many: Map<S, O> | null = null

  constructor(
    /** The filter these subscriptions were made with (fixed per node, handed to visitors). */
    readonly filter: string,
    subscriber: S,
    options: O,
  ) {
    this.one = subscriber
    this.oneOptions = options
  }

  get size(): number {
    return this.many !== null ? this.many.size : this.one !== null ? 1 : 0
  }

  /** Adds or replaces; returns whether the subscriber is new. */
  set(subscriber: S, options: O): boolean {
    const many = this.many
    if (many !== null) {
      const isNew = !many.has(subscriber)
      many.set(subscriber, options)
      return isNew
    }
    if (this.one === subscriber || this.one === null) {
      const isNew = this.one === null
      this.one = subscriber
      this.oneOptions = options
      return isNew
    }
    this.many = new Map([[this.one, this.oneOptions as O], [subscriber, options]])
    this.one = null
    this.oneOptions = undefined
    return true
  }

  delete(subscriber: S): boolean {
    if (this.many !== null) return this.many.delete(subscriber)
    if (this.one !== subscriber) return false
    this.one = null
    this.oneOptions = undefined
    return true
  }

  visit(visit: (subscriber: S, options: O, filter: string) => void): void {
    if (this.many !== null) visitAll(this.many, this.filter, visit)
    else if (this.one !== null) visit(this.one, this.oneOptions as O, this.filter)
  }
}

/**
 * One topic level of the index. A node stands for a unique filter prefix, so the filter strings
 * its subscribers registered under are fixed per node and kept here: match() hands them to the
 * visitor without building a string per call.
 */
class Node<S, O> {
  /** Literal next levels. Never holds '+' or '#', which have their own fields. */
  children: Map<string, Node<S, O>> | null = null
  // Mirror of `children` when it holds exactly one entry, the common case along a topic
  // hierarchy: match() then compares the level in place instead of slicing and hashing it
  // (measured: about a tenth off a five-level walk).
  soleKey: string | null = null
  sole: Node<S, O> | null = null
  plus: Node<S, O> | null = null
  /** Subscriptions whose filter ends at this level. */
  subs: Entries<S, O> | null = null
  /** Subscriptions to this prefix followed by '/#' ('#' alone at the root). */
  hashSubs: Entries<S, O> | null = null

  syncSole(): void {
    this.soleKey = null
    this.sole = null
    if (this.children?.size !== 1) return
    for (const [key, child] of this.children) {
      this.soleKey = key
      this.sole = child
    }
  }

  isEmpty(): boolean {
    return this.children === null && this.plus === null && this.subs === null && this.hashSubs === null
  }
}

const DOLLAR = 0x24

/**
 * A topic trie indexing subscriptions by topic filter, with the '+' and '#' wildcards of MQTT
 * section 4.7.
 *
 * Each entry is one (filter, subscriber) pair carrying options `O`. `S` is compared by identity,
 * so a caller can index anything: a session, an in-process callback, or a shared-subscription
 * group (strip `$share/{group}/` and add the rest of the filter with the group as subscriber).
 *
 * Filters must be valid ({@link isValidTopicFilter}); topics passed to {@link match} are
 * expected to be valid topic names, which the decoder guarantees.
 */
export class SubscriptionTrie<S extends object, O> {
  private readonly root = new Node<S, O>()
  private count = 0
  // A depth-first work list shared by every match() call so a call allocates no array. match()
  // only ever works above the height it found, so a visitor that re-enters match() (an
  // in-process subscriber publishing synchronously) leaves the outer walk intact.
  private readonly stackNodes: Node<S, O>[] = []
  private readonly stackStarts: number[] = []
  private top = 0

  /** Number of (filter, subscriber) entries. */
  get size(): number {
    return this.count
  }

  /**
   * Adds a subscription, or replaces the options of the same subscriber on the same filter.
   *
   * @returns true if the entry is new, false if it replaced one.
   * @throws RangeError when `filter` is not a valid topic filter.
   */
  add(filter: string, subscriber: S, options: O): boolean {
    if (!isValidTopicFilter(filter)) throw new RangeError(`invalid topic filter: ${JSON.stringify(filter)}`)
    let node = this.root
    let start = 0
    for (;;) {
      let end = filter.indexOf('/', start)
      if (end === -1) end = filter.length
      const level = filter.slice(start, end)
      if (level === '#') {
        // isValidTopicFilter guarantees '#' is the last level.
        if (node.hashSubs === null) {
          node.hashSubs = new Entries(filter, subscriber, options)
          this.count++
          return true
        }
        return this.counted(node.hashSubs.set(subscriber, options))
      }
      let next: Node<S, O> | undefined
      if (level === '+') {
        next = node.plus ??= new Node()
      } else {
        const children = (node.children ??= new Map())
        next = children.get(level)
        if (next === undefined) {
          next = new Node()
          children.set(level, next)
          node.syncSole()
        }
      }
      node = next
      if (end === filter.length) {
        if (node.subs === null) {
          node.subs = new Entries(filter, subscriber, options)
          this.count++
          return true
        }
        return this.counted(node.subs.set(subscriber, options))
      }
      start = end + 1
    }
  }

  private counted(isNew: boolean): boolean {
    if (isNew) this.count++
    return isNew
  }

  /**
   * Removes the subscription of `subscriber` on `filter`, pruning nodes left empty so memory
   * tracks the live subscriptions rather than every filter ever seen.
   *
   * @returns whether the entry existed.
   */
  remove(filter: string, subscriber: S): boolean {
    if (!isValidTopicFilter(filter)) return false
    const path: Node<S, O>[] = []
    const keys: string[] = []
    let node = this.root
    let start = 0
    let subs: Entries<S, O> | null
    let hash = false
    for (;;) {
      let end = filter.indexOf('/', start)
      if (end === -1) end = filter.length
      const level = filter.slice(start, end)
      if (level === '#') {
        subs = node.hashSubs
        hash = true
        break
      }
      const next = level === '+' ? node.plus : node.children?.get(level)
      if (next == null) return false
      path.push(node)
      keys.push(level)
      node = next
      if (end === filter.length) {
        subs = node.subs
        break
      }
      start = end + 1
    }
    if (subs === null || !subs.delete(subscriber)) return false
    this.count--
    if (subs.size === 0) {
      if (hash) node.hashSubs = null
      else node.subs = null
    }
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const parent = path[i] as Node<S, O>
      const key = keys[i] as string
      if (key === '+') {
        parent.plus = null
      } else if (parent.children !== null) {
        parent.children.delete(key)
        if (parent.children.size === 0) parent.children = null
        parent.syncSole()
      }
      node = parent
    }
    return true
  }

  /**
   * Calls `visit` once per (subscriber, filter) pair whose filter matches `topic`. A subscriber
   * with several overlapping filters is visited once per filter; de-duplicating is the
   * caller's job. Topics starting with '$' are not matched by filters starting with a wildcard
   * [MQTT-4.7.2-1].
   *
   * This is the publish hot path: it allocates only the level strings it looks up.
   */
  match(topic: string, visit: (subscriber: S, options: O, filter: string) => void): void {
    const len = topic.length
    const root = this.root
    const base = this.top
    const nodes = this.stackNodes
    const starts = this.stackStarts
    let top = base
    try {
      // The root is unrolled so the '$' rule costs one comparison rather than a depth check
      // on every node.
      const dollar = topic.charCodeAt(0) === DOLLAR
      if (!dollar && root.hashSubs !== null) root.hashSubs.visit(visit)
      let end = topic.indexOf('/')
      if (end === -1) end = len
      if (root.children !== null) {
        const child = root.children.get(topic.slice(0, end))
        if (child !== undefined) {
          nodes[top] = child
          starts[top++] = end + 1
        }
      }
      if (!dollar && root.plus !== null) {
        nodes[top] = root.plus
        starts[top++] = end + 1
      }
      while (top > base) {
        this.top = --top
        const node = nodes[top] as Node<S, O>
        const start = starts[top] as number
        // 'a/#' also matches 'a' (section 4.7.1.2), so '#' subscribers count wherever the
        // walk arrives, whether or not levels remain.
        if (node.hashSubs !== null) node.hashSubs.visit(visit)
        if (start > len) {
          if (node.subs !== null) node.subs.visit(visit)
          continue
        }
        const children = node.children
        const plus = node.plus
        if (children === null && plus === null) continue
        end = topic.indexOf('/', start)
        if (end === -1) end = len
        const soleKey = node.soleKey
        if (soleKey !== null) {
          if (end - start === soleKey.length && topic.startsWith(soleKey, start)) {
            nodes[top] = node.sole as Node<S, O>
            starts[top++] = end + 1
          }
        } else if (children !== null) {
          const child = children.get(topic.slice(start, end))
          if (child !== undefined) {
            nodes[top] = child
            starts[top++] = end + 1
          }
        }
        if (plus !== null) {
          nodes[top] = plus
          starts[top++] = end + 1
        }
      }
    } finally {
      // Entries left above `base` are stale but harmless: a node leaves the trie only once it
      // is empty, so all they can pin is a few empty nodes, bounded by the deepest walk.
      this.top = base
    }
  }

  /**
   * Number of trie nodes, the root included. For tests that check pruning.
   *
   * @internal
   */
  nodeCount(): number {
    let n = 0
    const work: Node<S, O>[] = [this.root]
    for (let node = work.pop(); node !== undefined; node = work.pop()) {
      n++
      if (node.plus !== null) work.push(node.plus)
      if (node.children !== null) for (const child of node.children.values()) work.push(child)
    }
    return n
  }
}

type Visit = (subscriber: unknown, options: unknown, filter: string) => void

// Map.forEach with a shared `this` visits entries without allocating, where for-of over
// entries allocated a pair per subscriber (measured: ~25x more scavenges on the hot path).
// Being shared, the context is saved and restored around each use so a visitor that
// re-enters match(), on this trie or another, finds it as it left it.
const ctx: { visit: Visit | null; filter: string } = { visit: null, filter: '' }

function visitEntry(this: typeof ctx, options: unknown, subscriber: unknown): void {
  const visit = this.visit as Visit
  visit(subscriber, options, this.filter)
}

function visitAll<S, O>(subs: Map<S, O>, filter: string, visit: (subscriber: S, options: O, filter: string) => void): void {
  const outerVisit = ctx.visit
  const outerFilter = ctx.filter
  ctx.visit = visit as Visit
  ctx.filter = filter
  try {
    subs.forEach(visitEntry, ctx)
  } finally {
    ctx.visit = outerVisit
    ctx.filter = outerFilter
  }
}
