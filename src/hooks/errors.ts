import type { HookName } from './events.js'

/** An exception thrown (or a rejection) by one of the host's hooks, tagged with the hook's name. */
export class HookError extends Error {
  constructor(
    readonly hook: HookName,
    readonly original: Error,
  ) {
    super(`the ${hook} hook failed: ${original.message}`)
    this.name = 'HookError'
  }
}

/** Any thrown value as an Error. */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** Tags what a hook threw (or rejected with) with the hook's name. */
export function hookThrew(hook: HookName, error: unknown): HookError {
  return new HookError(hook, asError(error))
}
