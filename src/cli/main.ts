#!/usr/bin/env node
import type { AddressInfo } from 'node:net'
import { Broker } from '../broker.js'
import { tcp } from '../transports/tcp.js'
import { parseCliArgs, USAGE } from './args.js'

function describe(address: AddressInfo | string | null): string {
  if (address === null || typeof address === 'string') return String(address)
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const note = address.address === '::' ? ' (all IPv4 and IPv6 addresses)' : ''
  return `mqtt://${host}:${address.port}${note}`
}

async function main(): Promise<void> {
  let options
  try {
    options = parseCliArgs(process.argv.slice(2))
  } catch (error) {
    console.error(`culex: ${(error as Error).message}\n\n${USAGE}`)
    process.exit(2)
  }
  if (options.help) {
    console.log(USAGE)
    return
  }
  const broker = new Broker()
  const listener = await broker.listen(tcp({ port: options.port, host: options.host }))
  console.log(`culex: listening on ${describe(listener.address())}`)
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    console.log(`culex: ${signal} received, shutting down`)
    broker.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('culex: shutdown failed', error)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
}

main().catch((error: unknown) => {
  console.error('culex:', error instanceof Error ? error.message : error)
  process.exit(1)
})
