/**
 * The CLI's logger: the broker's `Logger` (pino-shaped: `info(fields, message)`, `child`) writing
 * one line per entry on stdout, as JSON (`{"time":...,"level":"info","msg":...,...fields}`) or as
 * text (`INFO message key=value`), from a level up. No dependency.
 */
import type { Logger } from '../options.js'

export type LogLevel = 'error' | 'warn' | 'info' | 'debug'
export type LogFormat = 'json' | 'text'

const SEVERITY: Record<LogLevel, number> = { error: 50, warn: 40, info: 30, debug: 20 }

export interface LoggerOptions {
  level: LogLevel
  format: LogFormat
  /** Where lines go (without their newline). Default: stdout. */
  write?: (line: string) => void
  /** Default: the current time. */
  now?: () => Date
}

/** The keys every JSON line starts with; fields of the same names are left out rather than overwrite them. */
const RESERVED = new Set(['time', 'level', 'msg'])

/** A field's value as JSON can carry it: errors as their name, message, code and stack; buffers as their size. */
function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: value.message }
    const code = (value as { code?: unknown }).code
    if (code !== undefined) out.code = code
    if (value.stack !== undefined) out.stack = value.stack
    return out
  }
  if (typeof value === 'bigint') return value.toString()
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `<${value.byteLength} bytes>`
  return value
}

function stringify(value: unknown): string {
  const seen = new WeakSet<object>()
  return JSON.stringify(value, function (this: unknown, _key: string, v: unknown) {
    // Buffer.prototype.toJSON runs before the replacer: read the original value.
    const original = _key === '' ? v : (this as Record<string, unknown>)[_key]
    const p = plain(original)
    if (p !== null && typeof p === 'object') {
      if (seen.has(p)) return '[circular]'
      seen.add(p)
    }
    return p
  })
}

/** One entry as a line, in either format. */
export function formatEntry(format: LogFormat, level: LogLevel, message: string, fields: Record<string, unknown>, time: Date): string {
  const entries = Object.entries(fields).filter(([key, value]) => value !== undefined && !RESERVED.has(key))
  if (format === 'json') {
    const record: Record<string, unknown> = { time: time.toISOString(), level, msg: message }
    for (const [key, value] of entries) record[key] = value
    return stringify(record)
  }
  const parts = [level.toUpperCase(), message]
  for (const [key, value] of entries) parts.push(`${key}=${textValue(value)}`)
  return parts.join(' ')
}

/** A value in a text line: bare when it is one word, quoted (JSON) otherwise. */
function textValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message)
  const p = plain(value)
  if (typeof p === 'string') return /^[^\s"=\\]+$/.test(p) ? p : JSON.stringify(p)
  if (typeof p === 'number' || typeof p === 'boolean' || p === null) return String(p)
  return stringify(p)
}

class LineLogger implements Logger {
  constructor(
    private readonly options: Required<LoggerOptions>,
    private readonly bindings: Record<string, unknown>,
  ) {}

  info(fields: object, message: string): void {
    this.log('info', fields, message)
  }

  warn(fields: object, message: string): void {
    this.log('warn', fields, message)
  }

  error(fields: object, message: string): void {
    this.log('error', fields, message)
  }

  debug(fields: object, message: string): void {
    this.log('debug', fields, message)
  }

  child(bindings: Record<string, unknown>): Logger {
    return new LineLogger(this.options, { ...this.bindings, ...bindings })
  }

  private log(level: LogLevel, fields: object, message: string): void {
    if (SEVERITY[level] < SEVERITY[this.options.level]) return
    this.options.write(formatEntry(this.options.format, level, message, { ...this.bindings, ...(fields as Record<string, unknown>) }, this.options.now()))
  }
}

/** A logger with these settings. */
export function createLogger(options: LoggerOptions): Logger {
  return new LineLogger(
    {
      level: options.level,
      format: options.format,
      write: options.write ?? ((line) => process.stdout.write(`${line}\n`)),
      now: options.now ?? (() => new Date()),
    },
    {},
  )
}
