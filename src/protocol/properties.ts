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
  /** A byte whose only valid values are 0 and 1; anything else is a protocol error. */
  booleanValue: boolean
  /** An integer for which 0 is a protocol error. */
  nonZero: boolean
}

const ACKS: PropertyPlace[] = ['puback', 'pubrec', 'pubrel', 'pubcomp', 'suback', 'unsuback']
const ALL: PropertyPlace[] = [
  'connect', 'connack', 'publish', 'will', 'subscribe', 'unsubscribe', 'disconnect', 'auth', ...ACKS,
]

interface DefineOptions {
  repeatable?: boolean
  booleanValue?: boolean
  nonZero?: boolean
}

function define(
  id: number,
  name: keyof Properties,
  type: PropertyValueType,
  places: PropertyPlace[],
  options: DefineOptions = {},
): PropertyDefinition {
  return {
    id,
    name,
    type,
    places: new Set(places),
    repeatable: options.repeatable ?? false,
    booleanValue: options.booleanValue ?? false,
    nonZero: options.nonZero ?? false,
  }
}

const REPEATABLE = { repeatable: true }
/** "It is a Protocol Error to ... have a value other than 0 or 1." */
const BOOLEAN = { booleanValue: true }
/** "It is a Protocol Error ... for it to have the value 0." */
const NON_ZERO = { nonZero: true }

/** The property table of MQTT 5.0, section 2.2.2.2, with the value rules of each property's own section. */
const DEFINITIONS: PropertyDefinition[] = [
  define(0x01, 'payloadFormatIndicator', 'byte', ['publish', 'will']),
  define(0x02, 'messageExpiryInterval', 'u32', ['publish', 'will']),
  define(0x03, 'contentType', 'string', ['publish', 'will']),
  define(0x08, 'responseTopic', 'string', ['publish', 'will']),
  define(0x09, 'correlationData', 'binary', ['publish', 'will']),
  // 3.3.2.3.8 / 3.8.2.1.2: 1 to 268,435,455; "It is a Protocol Error if the Subscription Identifier has a value of 0"
  define(0x0b, 'subscriptionIdentifier', 'varint', ['publish', 'subscribe'], { repeatable: true, nonZero: true }),
  define(0x11, 'sessionExpiryInterval', 'u32', ['connect', 'connack', 'disconnect']),
  define(0x12, 'assignedClientIdentifier', 'string', ['connack']),
  define(0x13, 'serverKeepAlive', 'u16', ['connack']),
  define(0x15, 'authenticationMethod', 'string', ['connect', 'connack', 'auth']),
  define(0x16, 'authenticationData', 'binary', ['connect', 'connack', 'auth']),
  define(0x17, 'requestProblemInformation', 'byte', ['connect'], BOOLEAN),
  define(0x18, 'willDelayInterval', 'u32', ['will']),
  define(0x19, 'requestResponseInformation', 'byte', ['connect'], BOOLEAN),
  define(0x1a, 'responseInformation', 'string', ['connack']),
  define(0x1c, 'serverReference', 'string', ['connack', 'disconnect']),
  define(0x1f, 'reasonString', 'string', ['connack', 'disconnect', 'auth', ...ACKS]),
  define(0x21, 'receiveMaximum', 'u16', ['connect', 'connack'], NON_ZERO),
  define(0x22, 'topicAliasMaximum', 'u16', ['connect', 'connack']),
  define(0x23, 'topicAlias', 'u16', ['publish']),
  define(0x24, 'maximumQoS', 'byte', ['connack'], BOOLEAN),
  define(0x25, 'retainAvailable', 'byte', ['connack'], BOOLEAN),
  define(0x26, 'userProperties', 'pair', ALL, REPEATABLE),
  define(0x27, 'maximumPacketSize', 'u32', ['connect', 'connack'], NON_ZERO),
  define(0x28, 'wildcardSubscriptionAvailable', 'byte', ['connack'], BOOLEAN),
  define(0x29, 'subscriptionIdentifiersAvailable', 'byte', ['connack'], BOOLEAN),
  define(0x2a, 'sharedSubscriptionAvailable', 'byte', ['connack'], BOOLEAN),
]

/** Property definitions indexed by identifier. */
export const PROPERTY_BY_ID: ReadonlyMap<number, PropertyDefinition> = new Map(DEFINITIONS.map((d) => [d.id, d]))

/** Property definitions indexed by name. */
export const PROPERTY_BY_NAME: ReadonlyMap<keyof Properties, PropertyDefinition> = new Map(
  DEFINITIONS.map((d) => [d.name, d]),
)
