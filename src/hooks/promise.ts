/** Whether a hook's answer is a promise (any thenable), so the caller takes the async path only then. */
export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
