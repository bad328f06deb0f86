import { SharedGroup, type SharedMember } from '../routing/shared-group.js'
import type { RoutedMessage } from '../session/routed-message.js'
import type { ClusterNode } from './node.js'

/**
 * A shared subscription group of a cluster node: each message goes to one member in the whole
 * cluster. The node where a message is published picks the node (round-robin over the nodes
 * with members); a message another node picked this one for arrives tagged with the group
 * (`deliverPicked`), and untagged copies from other nodes are for ordinary subscriptions only.
 */
export class ClusterSharedGroup extends SharedGroup<RoutedMessage> {
  constructor(
    shareName: string,
    filter: string,
    private readonly node: ClusterNode,
  ) {
    super(shareName, filter)
  }

  override deliver(message: RoutedMessage): void {
    // Another node published it and picked a node for this group already.
    if (message.fromCluster) return
    // This node's own $SYS messages go to this node's members, if any.
    if (message.nodeLocal) {
      if (this.size > 0) super.deliverExcept(message, null)
      return
    }
    const to = this.node.pickShared(this.name, this.size > 0)
    if (to === undefined || to === this.node.nodeId) {
      super.deliverExcept(message, null)
      return
    }
    this.node.forwardShared(message.toStored(), this.name, to)
  }

  /** A message this node was picked for. */
  deliverPicked(message: RoutedMessage): void {
    this.deliverExcept(message, null)
  }

  /** A member's session ended: its messages go to another member, on another node if none is left here. */
  override deliverExcept(message: RoutedMessage, except: SharedMember<RoutedMessage> | null): boolean {
    if (super.deliverExcept(message, except)) return true
    const to = this.node.pickShared(this.name, false, this.node.nodeId)
    if (to === undefined) return false
    this.node.forwardShared(message.toStored(), this.name, to)
    return true
  }
}
