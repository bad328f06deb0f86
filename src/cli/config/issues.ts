/**
 * zod's issues as culex's problems: one per mistake, with its path, whether it is about a key
 * (an unknown key is pointed at itself, not at its value) and a message in the file's terms,
 * with "did you mean" for unknown keys and values.
 */
import type * as z from 'zod'
import { oneOf, show, type Path } from './schema.js'
import { closest } from './suggest.js'
import { keysAt, valueAt } from './walk.js'

/** One mistake in the configuration. */
export interface Problem {
  path: Path
  /** The problem is the key at `path` itself (unknown), not its value. */
  key: boolean
  message: string
}

type Issue = z.core.$ZodIssue

/** The problems of a failed parse of `data` by `schema`. */
export function problemsOf(schema: z.ZodType, data: unknown, issues: readonly Issue[]): Problem[] {
  const problems: Problem[] = []
  const visit = (issue: Issue, prefix: Path): void => {
    const path = [...prefix, ...(issue.path as Array<string | number>)]
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const key of issue.keys) problems.push({ path: [...path, key], key: true, message: unknownKey(schema, data, path, key) })
        return
      case 'invalid_union': {
        const discriminator = (issue as { discriminator?: string }).discriminator
        if (issue.errors.length === 0 && discriminator !== undefined) {
          problems.push({ path, key: false, message: badTag(issue as { options?: unknown[] }, valueAt(data, path)) })
          return
        }
        const branch = bestBranch(issue.errors)
        if (branch === undefined) problems.push({ path, key: false, message: issue.message })
        else for (const inner of branch) visit(inner, path)
        return
      }
      default:
        problems.push({ path, key: false, message: issue.message })
    }
  }
  for (const issue of issues) visit(issue, [])
  return problems
}

/**
 * Of the union's branches, the one that tells the most: one that accepted the value's type (its
 * issues are deeper inside), else the first. `flapping: {maxDisconect: 3}` is about the mapping
 * form's unknown key, not "expected true or false".
 */
function bestBranch(branches: Issue[][]): Issue[] | undefined {
  const typed = branches.find((issues) => issues.length > 0 && !issues.some((i) => i.code === 'invalid_type' && i.path.length === 0))
  return typed ?? branches.find((issues) => issues.length > 0)
}

function badTag(issue: { options?: unknown[] }, value: unknown): string {
  const options = (issue.options ?? []).map(String)
  const expected = `one of ${oneOf(options)}`
  if (value === undefined) return `missing: expected ${expected}`
  const hint = typeof value === 'string' ? closest(value, options) : undefined
  return `expected ${expected}, got ${show(value)}${hint === undefined ? '' : ` (did you mean ${hint}?)`}`
}

function unknownKey(schema: z.ZodType, data: unknown, path: Path, key: string): string {
  const { keys, all } = keysAt(schema, path, data)
  // A key of another variant: `durability` with a redis store, `path` on a tcp listener.
  const owners = all.filter((v) => key in v.shape && v.tag !== undefined).map((v) => v.tag as string)
  if (owners.length > 0) return `only with type ${oneOf(owners)}`
  const hint = closest(key, keys)
  if (hint !== undefined) return `unknown key (did you mean ${hint}?)`
  const listed = keys.filter((k) => k !== '$schema')
  return listed.length === 0 ? 'unknown key' : `unknown key; expected one of ${oneOf(listed)}`
}
