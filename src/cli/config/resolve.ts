/**
 * The configuration in effect: defaults < `--config` file < `CULEX_*` environment < flags,
 * checked as a whole. Every mistake is reported at once, each naming where it was made.
 */
import path from 'node:path'
import type { CliOptions } from '../args.js'
import { ConfigError } from '../errors.js'
import { loadEnv } from './env.js'
import { loadConfigFile } from './file.js'
import { flagsLayer } from './flags.js'
import { problemsOf } from './issues.js'
import { Merged, type Layer } from './layers.js'
import { configSchema, formatPath, type CulexConfig, type Path } from './schema.js'

export interface ResolvedConfig {
  config: CulexConfig
  /** The `--config` file as given, if any. */
  file: string | undefined
}

/** Where the configuration comes from. */
export interface ConfigSources {
  options: CliOptions
  env: NodeJS.ProcessEnv
  cwd: string
}

/** The configuration in effect; a ConfigError lists every mistake, each as `WHERE PATH: MESSAGE`. */
export function resolveConfig({ options, env: environment, cwd }: ConfigSources): ResolvedConfig {
  const problems: string[] = []
  const layers: Layer[] = []
  // A file that cannot be read or parsed throws its errors alone: checking the rest without it would mislead.
  if (options.config !== undefined) layers.push(loadConfigFile(options.config, cwd))
  const env = loadEnv(environment, cwd)
  problems.push(...env.problems)
  layers.push(env.layer, flagsLayer(options, cwd))

  const merged = new Merged()
  for (const layer of layers) merged.add(layer)
  const parsed = configSchema.safeParse(merged.data)
  if (!parsed.success) {
    for (const p of problemsOf(configSchema, merged.data, parsed.error.issues)) {
      const where = merged.where(p.path, p.key)
      problems.push(p.path.length === 0 ? `${where}: ${p.message}` : `${where} ${formatPath(p.path)}: ${p.message}`)
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(sortProblems(problems))
  return { config: normalize(parsed.data, merged, cwd), file: options.config }
}

/** The file's first, in line order (`culex.yaml:3:1` before `culex.yaml:12:5`), then the environment's, then the flags'; no repeats. */
function sortProblems(lines: string[]): string[] {
  const rank = (line: string): number => (line.startsWith('$') ? 1 : line.startsWith('-') ? 2 : 0)
  return [...new Set(lines)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, 'en', { numeric: true }))
}

/** A PEM text given in place of a file name. */
export function isPem(value: string): boolean {
  return value.includes('-----BEGIN ')
}

/**
 * What depends on where a value was set or on other values: relative file names made absolute
 * (against the configuration file's directory, or the working directory for env and flags), the
 * memory store when none is given, `auth.allowAnonymous` when not given.
 */
function normalize(config: CulexConfig, merged: Merged, cwd: string): CulexConfig {
  const out = structuredClone(config)
  delete out.$schema
  const absolute = (value: string, at: Path): string => (isPem(value) ? value : path.resolve(merged.sourceOf(at)?.baseDir ?? cwd, value))
  out.listeners.forEach((listener, i) => {
    if (listener.type === 'unix') listener.path = absolute(listener.path, ['listeners', i, 'path'])
    if (listener.type === 'tls' || listener.type === 'wss') {
      const tls = listener.tls
      const at = (key: string): Path => ['listeners', i, 'tls', key]
      tls.cert = absolute(tls.cert, at('cert'))
      tls.key = absolute(tls.key, at('key'))
      if (typeof tls.ca === 'string') tls.ca = absolute(tls.ca, at('ca'))
      else if (Array.isArray(tls.ca)) tls.ca = tls.ca.map((ca, j) => absolute(ca, ['listeners', i, 'tls', 'ca', j]))
    }
  })
  out.bridges?.forEach((bridge, i) => {
    const tls = bridge.tls
    if (tls === undefined) return
    const at = (...keys: Array<string | number>): Path => ['bridges', i, 'tls', ...keys]
    if (tls.certFile !== undefined) tls.certFile = absolute(tls.certFile, at('certFile'))
    if (tls.keyFile !== undefined) tls.keyFile = absolute(tls.keyFile, at('keyFile'))
    if (typeof tls.caFile === 'string') tls.caFile = absolute(tls.caFile, at('caFile'))
    else if (Array.isArray(tls.caFile)) tls.caFile = tls.caFile.map((ca, j) => absolute(ca, at('caFile', j)))
  })
  if (out.persistence === undefined && out.cluster === undefined) out.persistence = { type: 'memory' }
  if (out.persistence?.type === 'sqlite') out.persistence.path = absolute(out.persistence.path, ['persistence', 'path'])
  if (out.auth !== undefined) {
    const auth = out.auth
    if (auth.passwordFile !== undefined) auth.passwordFile = absolute(auth.passwordFile, ['auth', 'passwordFile'])
    if (auth.aclFile !== undefined) auth.aclFile = absolute(auth.aclFile, ['auth', 'aclFile'])
    auth.allowAnonymous ??= auth.passwordFile === undefined
  }
  return out
}
