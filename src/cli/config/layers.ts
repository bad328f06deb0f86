/**
 * The layers of the configuration (defaults < file < environment < flags), merged into one
 * value while remembering where each part came from, so that an error names the file line, the
 * variable or the flag that set the value at fault.
 */
import { formatPath, type Path } from './schema.js'

/** Where a layer's values come from. */
export interface Source {
  /** Names where the value at `path` (or, with `key`, the key itself) was set: `culex.yaml:12:5`, `$CULEX_X`, `--port`. */
  where(path: Path, key: boolean): string
  /** What relative file names set here are relative to. */
  baseDir: string
  /** Where it is a file, the file's name as given. */
  file?: string
}

/** Settings that go to the first tcp listener (`--port`, `--host`, `CULEX_PORT`, `CULEX_HOST`). */
export interface FirstTcp {
  port?: { value: unknown; source: Source }
  host?: { value: unknown; source: Source }
}

/** One layer: a partial configuration and where it comes from. */
export interface Layer {
  data: Record<string, unknown>
  source: Source
  firstTcp?: FirstTcp
}

/** A fixed place: a flag or a variable that sets one value. */
export function fixedSource(name: string, baseDir: string): Source {
  return { where: () => name, baseDir }
}

/** The merged configuration, and which source set each part of it. */
export class Merged {
  readonly data: Record<string, unknown> = {}
  private readonly origins = new Map<string, Source>()

  /** The source of the value at `path`: that of the nearest part of it set by some layer. */
  sourceOf(path: Path): Source | undefined {
    for (let n = path.length; n >= 0; n--) {
      const source = this.origins.get(formatPath(path.slice(0, n)))
      if (source !== undefined) return source
    }
    return undefined
  }

  /** Where the value at `path` was set, for an error message. */
  where(path: Path, key: boolean): string {
    return this.sourceOf(path)?.where(path, key) ?? 'defaults'
  }

  /**
   * Adds a layer over what is there: mappings merge key by key, anything else (a value, a list)
   * replaces. A mapping whose `type` changes replaces the mapping: `persistence: {type: redis}`
   * over a file's `{type: sqlite, path}` does not keep the path.
   */
  add(layer: Layer): void {
    this.mergeInto(this.data, layer.data, layer.source, [])
    if (layer.firstTcp !== undefined) this.applyFirstTcp(layer.firstTcp)
  }

  private mergeInto(target: Record<string, unknown>, source: Record<string, unknown>, from: Source, path: Path): void {
    for (const [key, value] of Object.entries(source)) {
      if (value === undefined) continue
      const at = [...path, key]
      const existing = target[key]
      if (isMapping(value) && isMapping(existing) && !('type' in value && value.type !== existing.type)) {
        // The mapping stays the layer's that made it: a key missing from it is blamed there.
        this.mergeInto(existing, value, from, at)
      } else {
        this.set(target, key, at, structuredClone(value), from)
      }
    }
  }

  /** Puts `value` at `target[key]` (whose path is `at`), set by `from`, forgetting what was under it. */
  private set(target: Record<string, unknown> | unknown[], key: string | number, at: Path, value: unknown, from: Source): void {
    ;(target as Record<string | number, unknown>)[key] = value
    const prefix = formatPath(at)
    for (const recorded of [...this.origins.keys()]) {
      if (recorded === prefix || recorded.startsWith(`${prefix}.`) || recorded.startsWith(`${prefix}[`)) this.origins.delete(recorded)
    }
    this.record(at, value, from)
  }

  /** `value` at `at`, and everything in it, set by `from`. */
  private record(at: Path, value: unknown, from: Source): void {
    this.origins.set(formatPath(at), from)
    if (Array.isArray(value)) value.forEach((item, i) => this.record([...at, i], item, from))
    else if (isMapping(value)) for (const [key, item] of Object.entries(value)) this.record([...at, key], item, from)
  }

  /** `--port`/`--host`: set the first tcp listener, adding one if there is none (and the default one if no layer gave listeners). */
  private applyFirstTcp(first: FirstTcp): void {
    if (first.port === undefined && first.host === undefined) return
    if (this.data.listeners === undefined) {
      this.data.listeners = [{ type: 'tcp' }]
      this.origins.set('listeners', fixedSource('defaults', '.'))
    }
    const listeners = this.data.listeners
    // Not a list: the schema says so, naming where it was set.
    if (!Array.isArray(listeners)) return
    let index = listeners.findIndex((l) => isMapping(l) && l.type === 'tcp')
    if (index === -1) {
      index = listeners.length
      listeners.push({ type: 'tcp' })
      this.origins.set(formatPath(['listeners', index]), (first.port ?? first.host)?.source as Source)
    }
    const listener = listeners[index] as Record<string, unknown>
    if (first.port !== undefined) this.set(listener, 'port', ['listeners', index, 'port'], first.port.value, first.port.source)
    if (first.host !== undefined) this.set(listener, 'host', ['listeners', index, 'host'], first.host.value, first.host.source)
  }
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
