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
      --host <host>   address to bind (default: all IPv4 and IPv6 addresses)
  -h, --help          show this help

Logging: DEBUG=culex:* culex   shows connections, packets and disconnects.`

/** Parses argv (without the node and script paths); throws with a readable message on bad input. */
export function parseCliArgs(argv: string[]): CliOptions {
  // `-h` used to be --host: say so rather than "Unexpected argument '127.0.0.1'".
  const h = argv.indexOf('-h')
  const next = h === -1 ? undefined : argv[h + 1]
  if (next !== undefined && !next.startsWith('-')) throw new Error(`-h is --help; to bind an address use --host ${next}`)
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', short: 'p' },
      // No short form: -h is help, as users expect.
      host: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  const port = values.port === undefined ? 1883 : Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${JSON.stringify(values.port)}`)
  return { port, host: values.host, help: values.help ?? false }
}
