import type { Properties } from '../protocol/packets.js'
import { ReasonCode } from '../protocol/reason-codes.js'

/** Human-readable reason strings for the failure codes the broker sends on acknowledgements. */
const REASON_STRINGS: Record<number, string> = {
  [ReasonCode.UnspecifiedError]: 'refused',
  [ReasonCode.NotAuthorized]: 'not authorized',
  [ReasonCode.TopicFilterInvalid]: 'invalid topic filter',
  [ReasonCode.PacketIdentifierNotFound]: 'packet identifier not found',
  [ReasonCode.QuotaExceeded]: 'quota exceeded',
  [ReasonCode.PayloadFormatInvalid]: 'payload is not the UTF-8 its Payload Format Indicator claims',
  [ReasonCode.SharedSubscriptionsNotSupported]: 'shared subscriptions are not available',
  [ReasonCode.WildcardSubscriptionsNotSupported]: 'wildcard subscriptions are not available',
  [ReasonCode.NoSubscriptionExisted]: 'no such subscription',
}

/**
 * Problem information for an MQTT 5 acknowledgement carrying `codes`: a reason string naming the
 * failures, or nothing when all succeeded or the client set Request Problem Information to 0,
 * which forbids reason strings outside PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29].
 */
export function problemProperties(requestProblemInformation: boolean, codes: number[]): Properties | undefined {
  if (!requestProblemInformation) return undefined
  const failures = [...new Set(codes.filter((c) => c >= 0x80 || c === ReasonCode.NoSubscriptionExisted))]
  if (failures.length === 0) return undefined
  return { reasonString: failures.map((c) => REASON_STRINGS[c] ?? `reason 0x${c.toString(16)}`).join('; ') }
}
