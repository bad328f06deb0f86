/**
 * The command line's settings as the top layer of the configuration. `--persistence` and
 * `--cluster` (with their companions) give a whole store; `--port`/`--host` set the first tcp
 * listener; every other flag sets one key.
 */
import type { CliOptions } from '../args.js'
import { kebabCase } from '../limits.js'
import type { FirstTcp, Layer, Source } from './layers.js'
import { fixedSource } from './layers.js'
import type { Path } from './schema.js'

/** `options` as a layer; `cwd` is what relative file names given as flags are relative to. */
export function flagsLayer(options: CliOptions, cwd: string): Layer {
  const data: Record<string, unknown> = {}
  // Which flag set each path, longest paths first when looked up.
  const owners: Array<{ path: Path; flag: string }> = []
  const put = (path: Path, value: unknown, flag: string): void => {
    let target = data
    for (const key of path.slice(0, -1)) target = (target[key as string] ??= {}) as Record<string, unknown>
    target[path[path.length - 1] as string] = value
    owners.push({ path, flag })
  }

  const store = options.persistence
  if (store !== undefined) {
    if (store.kind === 'memory') put(['persistence'], { type: 'memory' }, '--persistence')
    if (store.kind === 'sqlite') {
      put(['persistence'], { type: 'sqlite', path: store.path }, '--persistence')
      if (store.durability !== undefined) put(['persistence', 'durability'], store.durability, '--durability')
    }
    if (store.kind === 'redis') {
      put(['persistence'], { type: 'redis', url: store.url }, '--persistence')
      if (store.strict) put(['persistence', 'strict'], true, '--redis-strict')
    }
  }
  const cluster = options.cluster
  if (cluster !== undefined) {
    put(['cluster'], { redis: cluster.redis }, '--cluster')
    if (cluster.nodeId !== undefined) put(['cluster', 'nodeId'], cluster.nodeId, '--node-id')
    if (cluster.leaseMs !== undefined) put(['cluster', 'leaseMs'], cluster.leaseMs, '--cluster-lease-ms')
  }
  for (const [key, value] of Object.entries(options.limits)) put(['limits', key], value, `--${kebabCase(key)}`)
  for (const setting of options.settings) put(setting.path, setting.value, setting.flag)

  owners.sort((a, b) => b.path.length - a.path.length)
  const source: Source = {
    where: (path) => owners.find((o) => o.path.every((segment, i) => path[i] === segment))?.flag ?? 'the command line',
    baseDir: cwd,
  }
  const firstTcp: FirstTcp = {}
  if (options.port !== undefined) firstTcp.port = { value: options.port, source: fixedSource('--port', cwd) }
  if (options.host !== undefined) firstTcp.host = { value: options.host, source: fixedSource('--host', cwd) }
  return { data, source, firstTcp }
}
