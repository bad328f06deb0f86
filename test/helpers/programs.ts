import { accessSync, constants } from 'node:fs'

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
