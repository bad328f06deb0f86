/** The JSON Schema of the configuration file, generated from the zod schema (`npm run config-schema` writes it). */
import { fileURLToPath } from 'node:url'
import * as z from 'zod'
import { configSchema } from './schema.js'

/** Where the published schema lives: `culex.schema.json` at the package root (`culex-mqtt/culex.schema.json`). */
export const SCHEMA_FILE = fileURLToPath(new URL('../../../culex.schema.json', import.meta.url))

/** The schema of what may be written in `culex.yaml` / `culex.json` (every key optional, defaults shown). */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>
  const { $schema, ...rest } = schema
  return {
    $schema,
    title: 'culex configuration',
    description: 'The configuration file of the culex MQTT broker (culex --config culex.yaml). See docs/operations.md.',
    ...rest,
  }
}

/** The file's text: the schema as indented JSON. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`
}
