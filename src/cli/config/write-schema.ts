/** `npm run config-schema`: writes culex.schema.json from the configuration's zod schema. */
import { writeFileSync } from 'node:fs'
import { configJsonSchemaText, SCHEMA_FILE } from './json-schema.js'

writeFileSync(SCHEMA_FILE, configJsonSchemaText())
console.log(`wrote ${SCHEMA_FILE}`)
