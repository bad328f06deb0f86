/** CONNACK return codes of MQTT 3.1 and 3.1.1 (section 3.2.2.3). */
export const ConnackReturnCode = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUsernameOrPassword: 4,
  NotAuthorized: 5,
} as const

/** MQTT 5 reason codes (section 2.4), shared by CONNACK, PUBACK, SUBACK, DISCONNECT and friends. */
export const ReasonCode = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const

/** SUBACK failure return code of MQTT 3.1.1 [MQTT-3.9.3-2]. */
export const SUBACK_FAILURE = 0x80

/** The reason codes PUBACK and PUBREC may carry (5.0 Tables 3-4 and 3-5, the same list). */
const PUBLISH_ACK_CODES: ReadonlySet<number> = new Set([
  ReasonCode.Success,
  ReasonCode.NoMatchingSubscribers,
  ReasonCode.UnspecifiedError,
  ReasonCode.ImplementationSpecificError,
  ReasonCode.NotAuthorized,
  ReasonCode.TopicNameInvalid,
  ReasonCode.PacketIdentifierInUse,
  ReasonCode.QuotaExceeded,
  ReasonCode.PayloadFormatInvalid,
])

/** The reason codes PUBREL and PUBCOMP may carry (5.0 Tables 3-6 and 3-7, the same list). */
const RELEASE_ACK_CODES: ReadonlySet<number> = new Set([ReasonCode.Success, ReasonCode.PacketIdentifierNotFound])

/**
 * The reason codes each acknowledgement may carry; the sender MUST use one of them
 * [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1].
 */
export const ACK_REASON_CODES: Readonly<Record<'puback' | 'pubrec' | 'pubrel' | 'pubcomp', ReadonlySet<number>>> = {
  puback: PUBLISH_ACK_CODES,
  pubrec: PUBLISH_ACK_CODES,
  pubrel: RELEASE_ACK_CODES,
  pubcomp: RELEASE_ACK_CODES,
}
