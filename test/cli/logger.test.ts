// The CLI's logger: JSON or text lines, filtered by level, with child bindings.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogger, type LoggerOptions } from '../../src/cli/logger.js'

const TIME = new Date('2030-01-02T03:04:05.678Z')

function capture(options: Omit<LoggerOptions, 'write' | 'now'>): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = []
  return { lines, logger: createLogger({ ...options, write: (line) => lines.push(line), now: () => TIME }) }
}

test('json: one object per line, time, level and msg first, then the fields', () => {
  const { lines, logger } = capture({ level: 'info', format: 'json' })
  logger.info({ clientId: 'c1', qos: 1 }, 'client connected')
  assert.deepEqual(lines, ['{"time":"2030-01-02T03:04:05.678Z","level":"info","msg":"client connected","clientId":"c1","qos":1}'])
})

test('text: LEVEL message key=value, quoting values that are not one word', () => {
  const { lines, logger } = capture({ level: 'debug', format: 'text' })
  logger.warn({ clientId: 'c1', reason: 'keep alive timeout', n: 3, ok: true, none: undefined }, 'client dropped')
  logger.debug({ topics: ['a', 'b'] }, 'subscribed')
  assert.deepEqual(lines, ['WARN client dropped clientId=c1 reason="keep alive timeout" n=3 ok=true', 'DEBUG subscribed topics=["a","b"]'])
})

test('the level filters: info drops debug, error keeps only errors', () => {
  const info = capture({ level: 'info', format: 'text' })
  info.logger.debug({}, 'hidden')
  info.logger.info({}, 'shown')
  info.logger.error({}, 'shown too')
  assert.deepEqual(info.lines, ['INFO shown', 'ERROR shown too'])
  const error = capture({ level: 'error', format: 'text' })
  error.logger.warn({}, 'hidden')
  error.logger.error({}, 'shown')
  assert.deepEqual(error.lines, ['ERROR shown'])
})

test('child loggers add their bindings to every line; fields win over bindings; reserved keys stay', () => {
  const { lines, logger } = capture({ level: 'info', format: 'json' })
  const child = logger.child({ clientId: 'c1', node: 'n1' }).child({ listener: 'tcp' })
  child.info({ node: 'n2', msg: 'not this', level: 'nor this' }, 'hello')
  assert.deepEqual(JSON.parse(lines[0] as string), { time: TIME.toISOString(), level: 'info', msg: 'hello', clientId: 'c1', node: 'n2', listener: 'tcp' })
})

test('errors, buffers, bigints and cycles become JSON that can be read', () => {
  const { lines, logger } = capture({ level: 'info', format: 'json' })
  const error = Object.assign(new Error('boom'), { code: 'EBOOM' })
  const cycle: Record<string, unknown> = { a: 1 }
  cycle.self = cycle
  logger.error({ err: error, payload: Buffer.from('abc'), big: 10n, cycle }, 'failed')
  const record = JSON.parse(lines[0] as string) as Record<string, unknown>
  assert.deepEqual({ ...(record.err as object), stack: undefined }, { type: 'Error', message: 'boom', code: 'EBOOM', stack: undefined })
  assert.equal(record.payload, '<3 bytes>')
  assert.equal(record.big, '10')
  assert.deepEqual(record.cycle, { a: 1, self: '[circular]' })
  const text = capture({ level: 'info', format: 'text' })
  text.logger.error({ err: error }, 'failed')
  assert.deepEqual(text.lines, ['ERROR failed err="boom"'])
})
