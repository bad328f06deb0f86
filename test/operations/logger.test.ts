/**
 * The `logger` option: the broker's lifecycle lines reach a pino-shaped logger, each about one
 * client through `child({ clientId })`.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Logger } from '../../src/index.js'
import { leave, withBroker } from '../helpers/index.js'

interface Line {
  level: string
  bindings: Record<string, unknown>
  fields: Record<string, unknown>
  message: string
}

/** A logger that records every line with the bindings of the child it was written through. */
function recordingLogger(lines: Line[], bindings: Record<string, unknown> = {}): Logger {
  const write = (level: string) => (fields: object, message: string) => lines.push({ level, bindings, fields: fields as Record<string, unknown>, message })
  return {
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    debug: write('debug'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  }
}

test('connections, refusals, disconnects and host errors reach the logger, with the client id', async () => {
  const lines: Line[] = []
  const authenticate = ({ username }: { username: string | undefined }): boolean => username !== 'mallory'
  await withBroker({ logger: recordingLogger(lines), authenticate }, async (b) => {
    const client = await b.connect({ clientId: 'sensor-1', username: 'alice' })
    const connected = lines.find((l) => l.message === 'client connected')
    assert.deepEqual(connected?.bindings, { clientId: 'sensor-1' })
    assert.equal(connected?.level, 'info')
    assert.equal(connected?.fields.username, 'alice')
    assert.equal(connected?.fields.transport, 'tcp')

    await assert.rejects(b.connect({ clientId: 'intruder', username: 'mallory' }))
    const refused = lines.find((l) => l.message.startsWith('connection refused'))
    assert.equal(refused?.level, 'warn')
    assert.deepEqual(refused?.bindings, { clientId: 'intruder' })
    assert.equal(refused?.fields.reasonCode, 4)

    b.broker.on('clientConnect', () => {
      throw new Error('a bug in the host')
    })
    const second = await b.connect({ clientId: 'sensor-2' })
    const hostError = lines.find((l) => l.message === 'host code failed')
    assert.equal(hostError?.level, 'error')
    assert.match(String(hostError?.fields.err), /a bug in the host/)

    await leave(b, client)
    const gone = lines.find((l) => l.message === 'client disconnected' && l.bindings.clientId === 'sensor-1')
    assert.equal(gone?.fields.reason, 'disconnect')
    await leave(b, second)
  })
})

test('a logger that throws does not disturb the broker', async () => {
  const broken: Logger = {
    info: () => {
      throw new Error('disk full')
    },
    warn: () => {},
    error: () => {},
    debug: () => {},
    child: () => broken,
  }
  await withBroker({ logger: broken }, async (b) => {
    const { client, inbox } = await b.connectRecorded({ clientId: 'c' })
    await client.subscribeAsync('t', { qos: 1 })
    await client.publishAsync('t', 'still served', { qos: 1 })
    await inbox.waitFor('still served')
    await leave(b, client)
  })
})
