import { accessSync, constants } from 'node:fs'
import net from 'node:net'

/**
 * For tests that need an outside program: the reason to skip when it is missing, or undefined
 * when it is there. Under CI=true a missing program is an error, so CI cannot pass by skipping.
 */
export function skipWithout(program: string): string | undefined {
  const found = (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      accessSync(`${dir}/${program}`, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  if (found) return undefined
  if (process.env.CI === 'true') throw new Error(`${program} is required under CI=true but is not installed (see .ci/run)`)
  return `${program} is not installed`
}

/**
 * The mosquitto broker's path (PATH, then /usr/sbin, where Debian puts it, which a user's PATH may
 * lack), or why the test is skipped; under CI=true a missing broker is an error.
 */
export function findMosquitto(): { path?: string; skip?: string } {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    try {
      accessSync(`${dir}/mosquitto`, constants.X_OK)
      return { path: `${dir}/mosquitto` }
    } catch {
      // not here
    }
  }
  if (process.env.CI === 'true') throw new Error('mosquitto is required under CI=true but is not installed (see .ci/run)')
  return { skip: 'mosquitto is not installed' }
}

/** A loopback port nothing listens on now: bind port 0, read it, let it go (for programs that need a port given). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}
