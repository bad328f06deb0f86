/** A mistake on the command line: `culex` prints it and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** The command line was fine but the broker cannot start (a missing package, a store that will not open): exit 1. */
export class StartupError extends Error {
  override name = 'StartupError'
}

/** The first line of an error's message, so that `culex` errors stay one line. */
export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return text.split('\n', 1)[0]?.trim() ?? ''
}

/**
 * Mistakes in the configuration (file, `CULEX_*` variables, flags), every one found, each as
 * `WHERE PATH: MESSAGE` (`culex.yaml:12:5 listeners[1].port: expected ...`): exit 2.
 */
export class ConfigError extends UsageError {
  override name = 'ConfigError'

  constructor(readonly problems: string[]) {
    super(problems.join('\n'))
  }
}
