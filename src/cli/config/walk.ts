/**
 * Reads the shape of the configuration schema: the keys allowed at a path (for "did you mean"
 * and for environment variable names) and whether a value there is a string.
 */
import type * as z from 'zod'
import type { Path } from './schema.js'

/** What this module reads of a zod schema's definition. */
interface Def {
  type: string
  innerType?: z.ZodType
  in?: z.ZodType
  shape?: Record<string, z.ZodType>
  options?: z.ZodType[]
  discriminator?: string
  element?: z.ZodType
  values?: unknown[]
  entries?: Record<string, unknown>
}

function def(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def
}

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'nonoptional', 'readonly', 'catch'])

/** The schema without optional/default/... around it. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema
  for (;;) {
    const d = def(s)
    if (WRAPPERS.has(d.type) && d.innerType !== undefined) s = d.innerType
    else if (d.type === 'pipe' && d.in !== undefined) s = d.in
    else return s
  }
}

/** One object a value at some path may be: its keys, and the `type` it goes with in a discriminated union. */
export interface ObjectVariant {
  shape: Record<string, z.ZodType>
  /** The discriminator's value for this variant (e.g. 'tcp'), if it is one of several. */
  tag?: string
}

/** The object variants of a schema: one for an object, one per option of a union of objects. */
export function objectVariants(schema: z.ZodType): ObjectVariant[] {
  const s = unwrap(schema)
  const d = def(s)
  if (d.type === 'object' && d.shape !== undefined) return [{ shape: d.shape }]
  if (d.type === 'union' && d.options !== undefined) {
    const variants: ObjectVariant[] = []
    for (const option of d.options) {
      for (const variant of objectVariants(option)) {
        const discriminator = d.discriminator
        const tagSchema = discriminator === undefined ? undefined : variant.shape[discriminator]
        const tag = tagSchema === undefined ? undefined : def(unwrap(tagSchema)).values?.[0]
        variants.push(typeof tag === 'string' ? { ...variant, tag } : variant)
      }
    }
    return variants
  }
  return []
}

/** The discriminator of a union of objects (`type`), if it is one. */
export function discriminatorOf(schema: z.ZodType): string | undefined {
  const d = def(unwrap(schema))
  return d.type === 'union' ? d.discriminator : undefined
}

/** The variants that match `value` (by its discriminator when it has a known one), else all of them. */
export function variantsFor(schema: z.ZodType, value: unknown): ObjectVariant[] {
  const variants = objectVariants(schema)
  const discriminator = discriminatorOf(schema)
  if (discriminator === undefined || value === null || typeof value !== 'object') return variants
  const tag = (value as Record<string, unknown>)[discriminator]
  const matching = variants.filter((v) => v.tag === tag)
  return matching.length > 0 ? matching : variants
}

/** The schema of a list's items, if `schema` is a list. */
export function elementOf(schema: z.ZodType): z.ZodType | undefined {
  const d = def(unwrap(schema))
  return d.type === 'array' ? d.element : undefined
}

/** The schema at `path` inside `schema`, following `data` to pick union variants; undefined if no such key. */
export function schemaAt(schema: z.ZodType, path: Path, data?: unknown): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema
  let value = data
  for (const segment of path) {
    if (s === undefined) return undefined
    const element = elementOf(s)
    if (element !== undefined) {
      if (typeof segment !== 'number') return undefined
      s = element
    } else {
      if (typeof segment !== 'string') return undefined
      const variant: ObjectVariant | undefined = variantsFor(s, value).find((v) => segment in v.shape)
      s = variant?.shape[segment]
    }
    value = value !== null && typeof value === 'object' ? (value as Record<string | number, unknown>)[segment] : undefined
  }
  return s
}

/** The keys allowed in the mapping at `path`, given the data there (a listener's keys depend on its type). */
export function keysAt(schema: z.ZodType, path: Path, data: unknown): { keys: string[]; variants: ObjectVariant[]; all: ObjectVariant[] } {
  const s = schemaAt(schema, path, data)
  if (s === undefined) return { keys: [], variants: [], all: [] }
  const value = valueAt(data, path)
  const variants = variantsFor(s, value)
  const keys = [...new Set(variants.flatMap((v) => Object.keys(v.shape)))]
  return { keys, variants, all: objectVariants(s) }
}

/** The value at `path` in `data`, if any. */
export function valueAt(data: unknown, path: Path): unknown {
  let value = data
  for (const segment of path) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<string | number, unknown>)[segment]
  }
  return value
}

/** Whether a value at this schema must be a string (a string, an enum or a string literal): env values stay as typed. */
export function takesString(schema: z.ZodType): boolean {
  const d = def(unwrap(schema))
  if (d.type === 'string') return true
  if (d.type === 'enum') return Object.values(d.entries ?? {}).every((v) => typeof v === 'string')
  if (d.type === 'literal') return (d.values ?? []).every((v) => typeof v === 'string')
  return false
}

/** Whether this schema is (or may be) a mapping: keys below it can be set one by one. */
export function isMapping(schema: z.ZodType): boolean {
  return objectVariants(schema).length > 0
}

/** Whether this schema is a list. */
export function isList(schema: z.ZodType): boolean {
  return elementOf(schema) !== undefined
}
