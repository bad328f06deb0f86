/**
 * Preloaded with `node --import tsx --import ./test/cli/hide-packages.ts` to run culex as on a machine
 * where the packages named in CULEX_TEST_HIDE (comma-separated, e.g. "better-sqlite3,ioredis") are
 * not installed: `import` and `require` of them fail as they would then.
 */
import Module, { register } from 'node:module'

const hidden = (process.env.CULEX_TEST_HIDE ?? '').split(',').filter((name) => name !== '')

// ES modules: a resolve hook, registered after tsx's and so consulted first.
const hooks = `
const hidden = ${JSON.stringify(hidden)}
export async function resolve(specifier, context, next) {
  if (hidden.includes(specifier)) {
    const error = new Error("Cannot find package '" + specifier + "' imported from " + context.parentURL)
    error.code = 'ERR_MODULE_NOT_FOUND'
    throw error
  }
  return next(specifier, context)
}`
register(`data:text/javascript,${encodeURIComponent(hooks)}`)

// CommonJS (require, createRequire): Node 20's module hooks do not see these.
const cjs = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string }
const resolveFilename = cjs._resolveFilename
cjs._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]): string {
  if (hidden.includes(request)) {
    const error = new Error(`Cannot find module '${request}'`) as Error & { code: string }
    error.code = 'MODULE_NOT_FOUND'
    throw error
  }
  return resolveFilename.call(this, request, ...rest)
}
