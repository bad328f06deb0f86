/**
 * One topic level of the retained index. The full topic is kept where a message is stored so
 * matching and iteration need not rebuild it from the path.
 */
class Node<M> {
  children: Map<string, Node<M>> | null = null
  has = false
  message: M | undefined = undefined
  topic = ''
}

const DOLLAR = 0x24

/**
 * Retained messages by topic name, in a trie of topic levels so that a SUBSCRIBE's filter walks
 * only the branches it can match instead of testing every stored topic.
 *
 * Topics are expected to be valid topic names (no wildcards). The map holds at most one message
 * per topic; a caller deletes a topic when a retained PUBLISH with an empty payload arrives
 * [MQTT-3.3.1-10] [MQTT-3.3.1-11].
 */
export class RetainedIndex<M> {
  private readonly root = new Node<M>()
  private count = 0

  /** Number of stored messages. */
  get size(): number {
    return this.count
  }

  /** Stores `message` as the retained message of `topic`, replacing any earlier one. */
  set(topic: string, message: M): void {
    let node = this.root
    let start = 0
    for (;;) {
      let end = topic.indexOf('/', start)
      if (end === -1) end = topic.length
      const level = topic.slice(start, end)
      const children = (node.children ??= new Map())
      let next = children.get(level)
      if (next === undefined) {
        next = new Node()
        children.set(level, next)
      }
      node = next
      if (end === topic.length) break
      start = end + 1
    }
    if (!node.has) {
      node.has = true
      node.topic = topic
      this.count++
    }
    node.message = message
  }

  /** The retained message of exactly `topic`, if any. */
  get(topic: string): M | undefined {
    const node = this.find(topic)
    return node?.has === true ? node.message : undefined
  }

  /** Whether `topic` has a retained message. */
  has(topic: string): boolean {
    return this.find(topic)?.has === true
  }

  /**
   * Removes the retained message of `topic`, pruning the nodes left empty so memory tracks
   * the stored messages rather than every topic ever retained.
   *
   * @returns whether a message was stored.
   */
  delete(topic: string): boolean {
    const path: Node<M>[] = []
    const keys: string[] = []
    let node = this.root
    let start = 0
    for (;;) {
      let end = topic.indexOf('/', start)
      if (end === -1) end = topic.length
      const level = topic.slice(start, end)
      const next = node.children?.get(level)
      if (next === undefined) return false
      path.push(node)
      keys.push(level)
      node = next
      if (end === topic.length) break
      start = end + 1
    }
    if (!node.has) return false
    node.has = false
    node.message = undefined
    node.topic = ''
    this.count--
    for (let i = path.length - 1; i >= 0 && !node.has && node.children === null; i--) {
      const parent = path[i] as Node<M>
      const children = parent.children as Map<string, Node<M>>
      children.delete(keys[i] as string)
      if (children.size === 0) parent.children = null
      node = parent
    }
    return true
  }

  /**
   * Every retained message whose topic matches `filter`, for delivery on SUBSCRIBE. A filter
   * starting with a wildcard does not return topics starting with '$' [MQTT-4.7.2-1].
   *
   * `filter` is expected to be a valid topic filter; a '#' elsewhere than the last level is
   * taken literally.
   */
  match(filter: string): M[] {
    const out: M[] = []
    const len = filter.length
    // Depth-first over (node, index of the next filter level); an index past the end means
    // every level has been consumed. Iterative because retained topics may nest deeper than
    // the call stack.
    const nodes: Node<M>[] = [this.root]
    const starts: number[] = [0]
    for (let node = nodes.pop(); node !== undefined; node = nodes.pop()) {
      const start = starts.pop() as number
      if (start > len) {
        if (node.has) out.push(node.message as M)
        continue
      }
      const children = node.children
      let end = filter.indexOf('/', start)
      if (end === -1) end = len
      const atRoot = node === this.root
      if (end === len && end - start === 1 && filter.charCodeAt(start) === 0x23 /* # */) {
        // 'a/#' matches 'a' itself (section 4.7.1.2); the root holds no message.
        if (node.has) out.push(node.message as M)
        if (children !== null) {
          for (const [key, child] of children) {
            if (atRoot && key.charCodeAt(0) === DOLLAR) continue
            collectAll(child, out)
          }
        }
        continue
      }
      if (children === null) continue
      if (end - start === 1 && filter.charCodeAt(start) === 0x2b /* + */) {
        for (const [key, child] of children) {
          if (atRoot && key.charCodeAt(0) === DOLLAR) continue
          nodes.push(child)
          starts.push(end + 1)
        }
      } else {
        const child = children.get(filter.slice(start, end))
        if (child !== undefined) {
          nodes.push(child)
          starts.push(end + 1)
        }
      }
    }
    return out
  }

  /** Every stored (topic, message) pair, in no particular order. */
  *entries(): IterableIterator<[string, M]> {
    const work: Node<M>[] = [this.root]
    for (let node = work.pop(); node !== undefined; node = work.pop()) {
      if (node.has) yield [node.topic, node.message as M]
      if (node.children !== null) for (const child of node.children.values()) work.push(child)
    }
  }

  /**
   * Number of trie nodes, the root included. For tests that check pruning.
   *
   * @internal
   */
  nodeCount(): number {
    let n = 0
    const work: Node<M>[] = [this.root]
    for (let node = work.pop(); node !== undefined; node = work.pop()) {
      n++
      if (node.children !== null) for (const child of node.children.values()) work.push(child)
    }
    return n
  }

  private find(topic: string): Node<M> | undefined {
    let node = this.root
    let start = 0
    for (;;) {
      let end = topic.indexOf('/', start)
      if (end === -1) end = topic.length
      const next = node.children?.get(topic.slice(start, end))
      if (next === undefined) return undefined
      node = next
      if (end === topic.length) return node
      start = end + 1
    }
  }
}

/** Pushes the messages of `node` and all its descendants, without recursing. */
function collectAll<M>(node: Node<M>, out: M[]): void {
  const work: Node<M>[] = [node]
  for (let n = work.pop(); n !== undefined; n = work.pop()) {
    if (n.has) out.push(n.message as M)
    if (n.children !== null) for (const child of n.children.values()) work.push(child)
  }
}
