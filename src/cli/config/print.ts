/**
 * `--print-config`: the configuration in effect as YAML, without its secrets: passwords in
 * Redis and bridge URLs, bridge passwords, TLS passphrases and private keys given as PEM text.
 */
import { stringify } from 'yaml'
import { redactUrl } from '../persistence.js'
import { isPem } from './resolve.js'
import type { CulexConfig } from './schema.js'

export const REDACTED = '<redacted>'

function safeUrl(url: string): string {
  try {
    return redactUrl(url)
  } catch {
    return REDACTED
  }
}

/** A copy of `config` with its secrets replaced by `<redacted>`. */
export function redactConfig(config: CulexConfig): CulexConfig {
  const out = structuredClone(config)
  if (out.persistence?.type === 'redis') out.persistence.url = safeUrl(out.persistence.url)
  if (out.cluster !== undefined) out.cluster.redis = safeUrl(out.cluster.redis)
  for (const listener of out.listeners) {
    if (listener.type !== 'tls' && listener.type !== 'wss') continue
    if (listener.tls.passphrase !== undefined) listener.tls.passphrase = REDACTED
    if (isPem(listener.tls.key)) listener.tls.key = REDACTED
  }
  for (const bridge of out.bridges ?? []) {
    bridge.url = safeUrl(bridge.url)
    if (bridge.password !== undefined) bridge.password = REDACTED
    if (bridge.tls?.passphrase !== undefined) bridge.tls.passphrase = REDACTED
    if (bridge.tls?.keyFile !== undefined && isPem(bridge.tls.keyFile)) bridge.tls.keyFile = REDACTED
  }
  return out
}

/** The YAML `--print-config` prints. */
export function printConfig(config: CulexConfig, file: string | undefined): string {
  const header = `# culex: the configuration in effect (defaults < ${file ?? 'no --config file'} < CULEX_* environment < flags), secrets redacted\n`
  return header + stringify(redactConfig(config), { lineWidth: 0 })
}
