#!/usr/bin/env node
import type { AddressInfo } from 'node:net'
import { Broker } from '../broker.js'
import type { Limits } from '../options.js'
import { tcp } from '../transports/tcp.js'
import { parseCliArgs, USAGE, type CliOptions } from './args.js'
import { firstLine, StartupError, UsageError } from './errors.js'
import { renameLimitsInMessage } from './limits.js'
import type { ClusterOptions } from '../cluster/options.js'
import { createPersistence, redactUrl, requireIoredis } from './persistence.js'

function describe(address: AddressInfo | string | null): string {
  if (address === null || typeof address === 'string') return String(address)
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const note = address.address === '::' ? ' (all IPv4 and IPv6 addresses)' : ''
  return `mqtt://${host}:${address.port}${note}`
}

/** A mistake on the command line: the message, a pointer to --help, exit code 2. */
function usageExit(message: string): never {
  console.error(`culex: ${message}\nRun 'culex --help' for the options.`)
  process.exit(2)
}

/**
 * Checks the limits against the broker's own ranges, before any store is opened or created: a
 * broker that holds them all is built (in memory) and closed at once. Its errors name the flags.
 */
async function checkLimits(limits: Partial<Limits>): Promise<void> {
  if (Object.keys(limits).length === 0) return
  let probe: Broker
  try {
    probe = new Broker({ limits })
  } catch (error) {
    throw new UsageError(renameLimitsInMessage(firstLine(error)))
  }
  await probe.close()
}

let broker: Broker | undefined
let stopping = false

/**
 * The first SIGTERM/SIGINT: stop accepting connections, close the clients, flush persistence
 * (all `broker.close()`), exit 0. A second signal while that runs exits at once with code 1.
 */
function stop(signal: string): void {
  if (stopping) {
    console.error(`culex: ${signal} received again, exiting without finishing shutdown`)
    process.exit(1)
  }
  stopping = true
  console.log(`culex: ${signal} received, shutting down`)
  if (broker === undefined) {
    // Still loading the persistence adapter: nothing opened yet.
    console.log('culex: stopped')
    process.exit(0)
  }
  broker.close().then(
    () => {
      console.log('culex: stopped')
      process.exit(0)
    },
    (error: unknown) => {
      console.error(`culex: shutdown failed: ${firstLine(error)}`)
      process.exit(1)
    },
  )
}

async function main(): Promise<void> {
  let options: CliOptions
  try {
    options = parseCliArgs(process.argv.slice(2))
    if (options.help) {
      console.log(USAGE)
      return
    }
    await checkLimits(options.limits)
  } catch (error) {
    if (error instanceof UsageError) usageExit(error.message)
    throw error
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))

  const cluster = options.cluster
  let storeLabel: string
  if (cluster !== undefined) {
    await requireIoredis()
    if (stopping) return
    const clusterOptions: ClusterOptions = { redis: cluster.redis }
    if (cluster.nodeId !== undefined) clusterOptions.nodeId = cluster.nodeId
    if (cluster.leaseMs !== undefined) clusterOptions.leaseMs = cluster.leaseMs
    broker = new Broker({ limits: options.limits, cluster: clusterOptions })
    storeLabel = 'the cluster'
    console.log(`culex: cluster node ${cluster.nodeId ?? '(host name and process id)'} on ${redactUrl(cluster.redis)}`)
  } else {
    const persistence = await createPersistence(options.persistence)
    if (stopping) return
    // Synchronous from the adapter to the broker: a signal finds both or neither.
    broker = new Broker({ limits: options.limits, persistence: persistence.adapter })
    storeLabel = options.persistence.kind === 'memory' ? '' : `cannot open persistence ${persistence.label}: `
    console.log(`culex: persistence ${persistence.description}`)
  }
  let address: AddressInfo | string | null
  try {
    address = (await broker.listen(tcp({ port: options.port, host: options.host }))).address()
  } catch (error) {
    // A signal closed the broker while it was starting: stop() exits.
    if (stopping) return
    // The port is taken, or the store would not open: close what did open, then exit 1.
    stopping = true
    const listening = ['listen', 'bind', 'getaddrinfo'].includes(String((error as { syscall?: unknown }).syscall))
    const store = listening || cluster !== undefined ? '' : storeLabel
    console.error(`culex: ${store}${firstLine(error)}`)
    await broker.close().catch(() => {})
    process.exit(1)
  }
  console.log(`culex: listening on ${describe(address)}`)
}

main().catch((error: unknown) => {
  const message = error instanceof StartupError ? error.message : firstLine(error)
  console.error(`culex: ${message}`)
  process.exit(1)
})
