// A throwaway self-signed certificate for the `tls` scenario, made once per run with openssl:
// an ECDSA P-256 key (what a broker would be given today; cheaper handshakes than RSA) for
// CN=localhost with IP:127.0.0.1 in its subjectAltName, so the generator verifies it like any
// client would verify a real broker's (it trusts it as its CA).

import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

export interface BenchCert {
  /** Holds cert.pem and key.pem (bench/broker-process.ts --tls-dir). */
  dir: string
  /** The certificate, PEM: the generator's CA. */
  ca: string
  remove(): void
}

export function makeCert(): BenchCert {
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-bench-tls-'))
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 })
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err)
    throw new Error(`openssl could not make the bench's certificate: ${why}`, { cause: err })
  }
  // Mosquitto started as root reads its key file after switching to its `mosquitto` user: the
  // directory and the (throwaway, loopback-only) key must be readable by it.
  chmodSync(dir, 0o755)
  chmodSync(key, 0o644)
  return { dir, ca: readFileSync(cert, 'utf8'), remove: () => rmSync(dir, { recursive: true, force: true }) }
}
