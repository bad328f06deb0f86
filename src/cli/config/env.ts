/**
 * `CULEX_*` environment variables: `__` nests, SCREAMING_SNAKE names the camelCase keys
 * (`CULEX_AUTH__ALLOW_ANONYMOUS=true` is `auth.allowAnonymous`), values are JSON when they parse
 * as JSON (`CULEX_LISTENERS='[...]'`) and strings otherwise. `CULEX_PORT` and `CULEX_HOST` are
 * `--port` and `--host`. An unknown `CULEX_` name is an error, with the closest known one.
 */
import type * as z from 'zod'
import { fixedSource, isMapping, type FirstTcp, type Layer, type Source } from './layers.js'
import { configSchema, formatPath, type Path } from './schema.js'
import { closest } from './suggest.js'
import { isList, isMapping as schemaIsMapping, objectVariants, takesString } from './walk.js'

export const ENV_PREFIX = 'CULEX_'

/**
 * Prefixes of variables that are not configuration: the benchmark's (`CULEX_BENCH_`) and the
 * test harness's (`CULEX_TEST_HIDE`, `CULEX_CRASH_SEED` ...), which a culex started from them inherits.
 */
export const RESERVED_ENV_PREFIXES = ['CULEX_BENCH_', 'CULEX_TEST_', 'CULEX_CRASH_']

/** `--port` and `--host` as variables: they set the first tcp listener. */
const FIRST_TCP_VARIABLES = { CULEX_PORT: 'port', CULEX_HOST: 'host' } as const

/** `maxQueued` -> `MAX_QUEUED`, `maximumQoS` -> `MAXIMUM_QOS`. */
export function screamingSnake(key: string): string {
  return key
    .replace(/QoS/g, 'Qos')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()
}

/** Names compare without case and underscores: `MAXIMUM_QOS` is `maximumQoS`. */
const fold = (name: string): string => name.toLowerCase().replace(/_/g, '')

/** The variable of a configuration path: `['auth', 'allowAnonymous']` -> `CULEX_AUTH__ALLOW_ANONYMOUS`. */
export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map(screamingSnake).join('__')
}

/** Every variable culex reads, for "did you mean" and the documentation. */
export function envNames(schema: z.ZodType = configSchema): string[] {
  const names: string[] = Object.keys(FIRST_TCP_VARIABLES)
  const visit = (s: z.ZodType, path: string[]): void => {
    const keys = new Map<string, z.ZodType>()
    for (const variant of objectVariants(s)) for (const [key, child] of Object.entries(variant.shape)) if (!keys.has(key)) keys.set(key, child)
    for (const [key, child] of keys) {
      if (key === '$schema') continue
      names.push(envName([...path, key]))
      visit(child, [...path, key])
    }
  }
  visit(schema, [])
  return names
}

interface Assignment {
  name: string
  path: string[]
  raw: string
  /** Whether the value is parsed as JSON (not for a setting that takes a string: `CULEX_CLUSTER__NODE_ID=7` is "7"). */
  json: boolean
}

/**
 * The `CULEX_*` variables of `env` as a layer, and the problems with the others: unknown names,
 * values set inside a list, variables that contradict each other.
 */
export function loadEnv(env: NodeJS.ProcessEnv, cwd: string, schema: z.ZodType = configSchema): { layer: Layer; problems: string[] } {
  const problems: string[] = []
  const assignments: Assignment[] = []
  const firstTcp: FirstTcp = {}
  let known: string[] | undefined
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || raw === '') continue
    if (RESERVED_ENV_PREFIXES.some((p) => name.startsWith(p))) continue
    if (name in FIRST_TCP_VARIABLES) {
      const key = FIRST_TCP_VARIABLES[name as keyof typeof FIRST_TCP_VARIABLES]
      firstTcp[key] = { value: parseValue(raw, key === 'port'), source: fixedSource(`$${name}`, cwd) }
      continue
    }
    const resolved = resolveName(name, schema)
    if (typeof resolved === 'string') {
      known ??= envNames(schema)
      const hint = resolved === 'unknown variable' ? closest(name, known) : undefined
      problems.push(`$${name}: ${resolved}${hint === undefined ? '' : ` (did you mean ${hint}?)`}`)
      continue
    }
    assignments.push({ name, path: resolved.path, raw, json: !resolved.takesString })
  }

  // Shorter paths first, so that CULEX_LIMITS='{...}' and CULEX_LIMITS__MAX_QUEUED=5 combine.
  assignments.sort((a, b) => a.path.length - b.path.length || a.name.localeCompare(b.name))
  const data: Record<string, unknown> = {}
  const setBy = new Map<string, string>()
  for (const assignment of assignments) {
    const value = parseValue(assignment.raw, assignment.json)
    let target = data
    let conflict: string | undefined
    for (let i = 0; i < assignment.path.length - 1; i++) {
      const key = assignment.path[i] as string
      const next = target[key]
      if (next === undefined) target[key] = {}
      else if (!isMapping(next)) {
        // Set by a variable for this path, or by one for a mapping around it, as JSON.
        for (let j = i + 1; j > 0 && conflict === undefined; j--) conflict = setBy.get(formatPath(assignment.path.slice(0, j)))
        conflict ??= 'CULEX_*'
        break
      }
      target = target[key] as Record<string, unknown>
    }
    if (conflict !== undefined) {
      problems.push(`$${assignment.name}: conflicts with $${conflict}, which sets ${formatPath(assignment.path.slice(0, -1))} to a value that is not a mapping`)
      continue
    }
    const key = assignment.path[assignment.path.length - 1] as string
    if (isMapping(target[key]) && isMapping(value)) Object.assign(target[key] as object, value)
    else target[key] = value
    setBy.set(formatPath(assignment.path), assignment.name)
  }

  const byDepth = [...assignments].sort((a, b) => b.path.length - a.path.length)
  const source: Source = {
    where: (path: Path) => {
      const owner = byDepth.find((a) => a.path.every((segment, i) => path[i] === segment))
      return owner === undefined ? '$CULEX_*' : `$${owner.name}`
    },
    baseDir: cwd,
  }
  return { layer: { data, source, firstTcp }, problems }
}

/** JSON when it parses as JSON (`5`, `true`, `[...]`, `{...}`), else the text itself. */
function parseValue(raw: string, json: boolean): unknown {
  if (!json) return raw
  try {
    return JSON.parse(raw) as unknown
  } catch {
    return raw
  }
}

/** The configuration path a variable names, or why it names none. */
function resolveName(name: string, schema: z.ZodType): { path: string[]; takesString: boolean } | string {
  const segments = name.slice(ENV_PREFIX.length).split('__')
  let s: z.ZodType = schema
  const path: string[] = []
  for (const segment of segments) {
    if (segment === '') return 'unknown variable (nesting is two underscores, between names)'
    if (isList(s) && path.length > 0) {
      return `${formatPath(path)} is a list: set it whole, as JSON (${envName(path)}='[...]')`
    }
    if (!schemaIsMapping(s)) return path.length === 0 ? 'unknown variable' : `${formatPath(path)} is not a mapping`
    let match: [string, z.ZodType] | undefined
    for (const variant of objectVariants(s)) {
      match = Object.entries(variant.shape).find(([key]) => key !== '$schema' && fold(key) === fold(segment))
      if (match !== undefined) break
    }
    if (match === undefined) return 'unknown variable'
    path.push(match[0])
    s = match[1]
  }
  return { path, takesString: takesString(s) }
}
