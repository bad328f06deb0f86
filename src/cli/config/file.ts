/**
 * `--config FILE`: reads a YAML or JSON file (JSON is parsed as YAML, so both get line and
 * column numbers) into a layer whose errors point at the file's lines.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import { ConfigError } from '../errors.js'
import { isMapping, type Layer, type Source } from './layers.js'
import type { Path } from './schema.js'

export const CONFIG_EXTENSIONS = ['.yaml', '.yml', '.json']

/** Reads `name` (as given on the command line, relative to `cwd`); a file that cannot be read or parsed is a ConfigError. */
export function loadConfigFile(name: string, cwd: string): Layer {
  const extension = path.extname(name).toLowerCase()
  if (!CONFIG_EXTENSIONS.includes(extension)) throw new ConfigError([`--config ${name}: expected a .yaml, .yml or .json file`])
  const absolute = path.resolve(cwd, name)
  let text: string
  try {
    text = readFileSync(absolute, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory, not a file' : (error as Error).message
    throw new ConfigError([`--config ${name}: cannot read ${absolute}: ${why}`])
  }
  return parseConfigText(text, name, path.dirname(absolute))
}

/** Parses the text of a configuration file named `name` (for messages); relative file names in it are relative to `baseDir`. */
export function parseConfigText(text: string, name: string, baseDir: string): Layer {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset)
    return `${name}:${line}:${col}`
  }
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split('\n', 1)[0]}`))
  }
  const data: unknown = doc.toJS({ maxAliasCount: 1000 }) ?? {}
  if (!isMapping(data)) {
    const offset = (doc.contents as Node | null)?.range?.[0] ?? 0
    throw new ConfigError([`${at(offset)}: expected a mapping of settings (listeners:, limits: ...) at the top level`])
  }
  const source: Source = {
    where: (p, key) => at(offsetOf(doc, p, key)),
    baseDir,
    file: name,
  }
  return { data, source }
}

/**
 * Where the setting at `path` starts: its key (`port:` in `port: 70000`), or the item of a list;
 * for a missing key, its nearest ancestor's. (The `key` flag makes no difference here: a line is
 * pointed at by its key either way.)
 */
function offsetOf(doc: Document, path: Path, _key: boolean): number {
  for (let n = path.length; n > 0; n--) {
    const at = path.slice(0, n)
    const last = at[n - 1]
    if (typeof last === 'string') {
      const parent = n === 1 ? doc.contents : doc.getIn(at.slice(0, -1), true)
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === last)
        const start = (pair?.key as Node | undefined)?.range?.[0]
        if (start !== undefined) return start
      }
      continue
    }
    const node = doc.getIn(at, true) as Node | undefined
    const start = node?.range?.[0]
    if (start !== undefined) return start
  }
  return (doc.contents as Node | null)?.range?.[0] ?? 0
}
