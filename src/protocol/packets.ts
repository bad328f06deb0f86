/**
 * The MQTT control packets as plain objects. The decoder produces them, the encoder
 * consumes them; nothing here knows about sockets.
 *
 * Field names follow the specification. `properties` only exists on protocol level 5.
 */

/** Protocol levels: 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1, 5 = MQTT 5.0. */
export type ProtocolVersion = 3 | 4 | 5

/** Quality of service level. */
export type QoS = 0 | 1 | 2

/** MQTT 5 properties, by their spec names in camelCase. Only those a packet may carry are set. */
export interface Properties {
  payloadFormatIndicator?: number
  messageExpiryInterval?: number
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  subscriptionIdentifier?: number[]
  sessionExpiryInterval?: number
  assignedClientIdentifier?: string
  serverKeepAlive?: number
  authenticationMethod?: string
  authenticationData?: Buffer
  requestProblemInformation?: number
  willDelayInterval?: number
  requestResponseInformation?: number
  responseInformation?: string
  serverReference?: string
  reasonString?: string
  receiveMaximum?: number
  topicAliasMaximum?: number
  topicAlias?: number
  maximumQoS?: number
  retainAvailable?: number
  userProperties?: Array<[string, string]>
  maximumPacketSize?: number
  wildcardSubscriptionAvailable?: number
  subscriptionIdentifiersAvailable?: number
  sharedSubscriptionAvailable?: number
}

export interface WillMessage {
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  properties?: Properties
}

export interface ConnectPacket {
  type: 'connect'
  protocolName: string
  protocolVersion: number
  /** The level had its bridge bit set (0x83, 0x84): the client is another broker's bridge. */
  bridge?: boolean
  cleanSession: boolean
  keepAlive: number
  clientId: string
  username?: string
  password?: Buffer
  will?: WillMessage
  properties?: Properties
}

export interface ConnackPacket {
  type: 'connack'
  sessionPresent: boolean
  /** The 3.1.1 return code, or the MQTT 5 reason code. */
  returnCode: number
  properties?: Properties
}

export interface PublishPacket {
  type: 'publish'
  topic: string
  payload: Buffer
  qos: QoS
  retain: boolean
  dup: boolean
  /** 0 for QoS 0. */
  packetId: number
  properties?: Properties
  /**
   * Set by the decoder on a 3.1/3.1.1 PUBLISH: how many bytes of the packet precede `payload` in
   * the buffer `payload` views, so the packet as received can be forwarded without encoding it.
   */
  bytesBeforePayload?: number
  /** Set with `bytesBeforePayload`: the buffer the packet was read into, which `payload` is a view of. */
  wire?: Buffer
}

export interface AckPacket {
  type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'
  packetId: number
  /** MQTT 5 only; 0 (success) when absent. */
  reasonCode?: number
  properties?: Properties
}

export interface Subscription {
  topicFilter: string
  qos: QoS
  /** MQTT 5 subscription options. */
  noLocal?: boolean
  retainAsPublished?: boolean
  retainHandling?: 0 | 1 | 2
  /** MQTT 5: the Subscription Identifier of the SUBSCRIBE that made this subscription. */
  subscriptionIdentifier?: number
}

export interface SubscribePacket {
  type: 'subscribe'
  packetId: number
  subscriptions: Subscription[]
  properties?: Properties
}

export interface SubackPacket {
  type: 'suback'
  packetId: number
  /** Granted QoS (0, 1, 2) or a failure code (0x80, or an MQTT 5 reason code). */
  reasonCodes: number[]
  properties?: Properties
}

export interface UnsubscribePacket {
  type: 'unsubscribe'
  packetId: number
  topicFilters: string[]
  properties?: Properties
}

export interface UnsubackPacket {
  type: 'unsuback'
  packetId: number
  /** MQTT 5 only. */
  reasonCodes?: number[]
  properties?: Properties
}

export interface PingreqPacket {
  type: 'pingreq'
}

export interface PingrespPacket {
  type: 'pingresp'
}

export interface DisconnectPacket {
  type: 'disconnect'
  /** MQTT 5 only. */
  reasonCode?: number
  properties?: Properties
}

export interface AuthPacket {
  type: 'auth'
  reasonCode: number
  properties?: Properties
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | AckPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket

export type PacketTypeName = Packet['type']

/** Control packet type numbers (the high nibble of the first byte). */
export const PACKET_TYPE_CODE: Record<PacketTypeName, number> = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
}
