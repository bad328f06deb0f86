import type { Properties } from './packets.js'

/** Where a property may appear: a packet type name, or 'will' for the will properties of CONNECT. */
export type PropertyPlace =
  | 'connect'
  | 'connack'
  | 'publish'
  | 'will'
  | 'puback'
  | 'pubrec'
  | 'pubrel'
  | 'pubcomp'
  | 'subscribe'
  | 'suback'
  | 'unsubscribe'
  | 'unsuback'
  | 'disconnect'
  | 'auth'

export type PropertyValueType = 'byte' | 'u16' | 'u32' | 'varint' | 'string' | 'binary' | 'pair'

export interface PropertyDefinition {
  id: number
  name: keyof Properties
  type: PropertyValueType
  places: ReadonlySet<PropertyPlace>
  /** Whether the property may appear more than once (user properties, subscription identifiers in PUBLISH). */
  repeatable: boolean
}

const ACKS: PropertyPlace[] = ['puback', 'pubrec', 'pubrel', 'pubcomp', 'suback', 'unsuback']
const ALL: PropertyPlace[] = [
  'connect', 'connack', 'publish', 'will', 'subscribe', 'unsubscribe', 'disconnect', 'auth', ...ACKS,
]

function define(
  id: number,
  name: keyof Properties,
  type: PropertyValueType,
  places: PropertyPlace[],
  repeatable = false,
): PropertyDefinition {
  return { id, name, type, places: new Set(places), repeatable }
}

/** The property table of MQTT 5.0, section 2.2.2.2. */
const DEFINITIONS: PropertyDefinition[] = [
  define(0x01, 'payloadFormatIndicator', 'byte', ['publish', 'will']),
  define(0x02, 'messageExpiryInterval', 'u32', ['publish', 'will']),
  define(0x03, 'contentType', 'string', ['publish', 'will']),
  define(0x08, 'responseTopic', 'string', ['publish', 'will']),
  define(0x09, 'correlationData', 'binary', ['publish', 'will']),
  define(0x0b, 'subscriptionIdentifier', 'varint', ['publish', 'subscribe'], true),
  define(0x11, 'sessionExpiryInterval', 'u32', ['connect', 'connack', 'disconnect']),
  define(0x12, 'assignedClientIdentifier', 'string', ['connack']),
  define(0x13, 'serverKeepAlive', 'u16', ['connack']),
  define(0x15, 'authenticationMethod', 'string', ['connect', 'connack', 'auth']),
  define(0x16, 'authenticationData', 'binary', ['connect', 'connack', 'auth']),
  define(0x17, 'requestProblemInformation', 'byte', ['connect']),
  define(0x18, 'willDelayInterval', 'u32', ['will']),
  define(0x19, 'requestResponseInformation', 'byte', ['connect']),
  define(0x1a, 'responseInformation', 'string', ['connack']),
  define(0x1c, 'serverReference', 'string', ['connack', 'disconnect']),
  define(0x1f, 'reasonString', 'string', ['connack', 'disconnect', 'auth', ...ACKS]),
  define(0x21, 'receiveMaximum', 'u16', ['connect', 'connack']),
  define(0x22, 'topicAliasMaximum', 'u16', ['connect', 'connack']),
  define(0x23, 'topicAlias', 'u16', ['publish']),
  define(0x24, 'maximumQoS', 'byte', ['connack']),
  define(0x25, 'retainAvailable', 'byte', ['connack']),
  define(0x26, 'userProperties', 'pair', ALL, true),
  define(0x27, 'maximumPacketSize', 'u32', ['connect', 'connack']),
  define(0x28, 'wildcardSubscriptionAvailable', 'byte', ['connack']),
  define(0x29, 'subscriptionIdentifiersAvailable', 'byte', ['connack']),
  define(0x2a, 'sharedSubscriptionAvailable', 'byte', ['connack']),
]

/** Property definitions indexed by identifier. */
export const PROPERTY_BY_ID: ReadonlyMap<number, PropertyDefinition> = new Map(DEFINITIONS.map((d) => [d.id, d]))

/** Property definitions indexed by name, in identifier order (the order the encoder writes them). */
export const PROPERTY_BY_NAME: ReadonlyMap<keyof Properties, PropertyDefinition> = new Map(
  DEFINITIONS.map((d) => [d.name, d]),
)
