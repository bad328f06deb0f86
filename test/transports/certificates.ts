import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A throwaway certificate authority with a server certificate for 127.0.0.1/localhost and one client certificate. */
export interface TestPki {
  ca: Buffer
  serverKey: Buffer
  serverCert: Buffer
  clientKey: Buffer
  clientCert: Buffer
  /** A client certificate signed by another CA: must be rejected. */
  strangerKey: Buffer
  strangerCert: Buffer
}

/** Generates a PKI with Debian's openssl (in the test, never committed). */
export function makePki(clientCn = 'device-42'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'culex-pki-'))
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  }
  try {
    for (const name of ['ca', 'other-ca']) {
      run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`)
    }
    const issue = (name: string, cn: string, ca: string, ext: string): void => {
      run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
      writeFileSync(join(dir, `${name}.ext`), ext)
      run('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`)
    }
    issue('server', 'localhost', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
    issue('client', clientCn, 'ca', 'extendedKeyUsage=clientAuth\n')
    issue('stranger', 'intruder', 'other-ca', 'extendedKeyUsage=clientAuth\n')
    const read = (f: string): Buffer => readFileSync(join(dir, f))
    return {
      ca: read('ca.crt'),
      serverKey: read('server.key'),
      serverCert: read('server.crt'),
      clientKey: read('client.key'),
      clientCert: read('client.crt'),
      strangerKey: read('stranger.key'),
      strangerCert: read('stranger.crt'),
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
