import { parseArgs } from 'node:util'

/** What the command line asked for. */
export interface CliOptions {
  port: number
  host: string | undefined
  help: boolean
}

export const USAGE = `Usage: culex [options]

Runs a standalone MQTT broker (MQTT 3.1, 3.1.1 and 5.0 over TCP).

Options:
  -p, --port <port>   TCP port to listen on (default 1883; 0 picks a free port)
  -h, --host <host>   address to bind (default: all IPv4 and IPv6 addresses)
      --help          show this help

Logging: DEBUG=culex:* culex   shows connections, packets and disconnects.`

/** Parses argv (without the node and script paths); throws with a readable message on bad input. */
export function parseCliArgs(argv: string[]): CliOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', short: 'p' },
      host: { type: 'string', short: 'h' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  const port = values.port === undefined ? 1883 : Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${JSON.stringify(values.port)}`)
  return { port, host: values.host, help: values.help ?? false }
}
