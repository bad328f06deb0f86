/**
 * Mosquitto's own command-line clients against Culex: an independent MQTT implementation
 * speaking 3.1 and 3.1.1 to the broker, for publish/subscribe, retained messages, wills and
 * refused credentials.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { startBroker, skipWithout, type TestBroker } from '../helpers/index.js'

const skip = skipWithout('mosquitto_pub') ?? skipWithout('mosquitto_sub')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(program: string, args: string[], timeoutMs = 10000): { done: Promise<Run>; kill: (signal: NodeJS.Signals) => void } {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const done = new Promise<Run>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    }),
  )
  return { done, kill: (signal) => child.kill(signal) }
}

/** Waits until some client has subscribed to `filter`. */
async function subscribed(b: TestBroker, filter: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no subscription to ${filter}`)), 5000)
    b.broker.on('subscribe', (subs) => {
      if (subs.some((s) => s.topicFilter === filter)) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

describe('mosquitto clients', { skip }, () => {
  test('mosquitto_sub receives what mosquitto_pub publishes, over 3.1.1 and 3.1, at QoS 0, 1 and 2', async () => {
    const b = await startBroker()
    try {
      const port = String(b.port)
      const ready = subscribed(b, 'interop/#')
      const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv311', '-q', '2', '-t', 'interop/#', '-C', '3', '-v'])
      await ready
      for (const [version, qos, topic] of [['mqttv311', '0', 'interop/a'], ['mqttv311', '1', 'interop/b'], ['mqttv31', '2', 'interop/c']] as const) {
        const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', version, '-q', qos, '-t', topic, '-m', `hello ${qos}`]).done
        assert.equal(pub.code, 0, pub.stderr)
      }
      const result = await sub.done
      assert.equal(result.code, 0, result.stderr)
      assert.deepEqual(result.stdout.trim().split('\n'), ['interop/a hello 0', 'interop/b hello 1', 'interop/c hello 2'])
    } finally {
      await b.close()
    }
  })

  test('a retained message from mosquitto_pub reaches a later mosquitto_sub', async () => {
    const b = await startBroker()
    try {
      const port = String(b.port)
      const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-q', '1', '-r', '-t', 'interop/retained', '-m', 'kept']).done
      assert.equal(pub.code, 0, pub.stderr)
      const sub = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'interop/+', '-C', '1', '-v']).done
      assert.equal(sub.stdout.trim(), 'interop/retained kept')
    } finally {
      await b.close()
    }
  })

  test("a killed mosquitto_sub's will is published", async () => {
    const b = await startBroker()
    try {
      const port = String(b.port)
      const ready = subscribed(b, 'interop/will')
      const watcher = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'interop/will', '-C', '1', '-v'])
      await ready
      const dying = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'interop/other', '--will-topic', 'interop/will', '--will-payload', 'gone', '--will-qos', '1'])
      await subscribed(b, 'interop/other')
      dying.kill('SIGKILL')
      const result = await watcher.done
      assert.equal(result.stdout.trim(), 'interop/will gone')
    } finally {
      await b.close()
    }
  })

  test('mosquitto_pub with a wrong password is refused with "bad user name or password"', async () => {
    const b = await startBroker({ authenticate: ({ username, password }) => username === 'u' && password?.toString() === 'right' })
    try {
      const port = String(b.port)
      const refused = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'u', '-P', 'wrong', '-t', 't', '-m', 'x']).done
      assert.notEqual(refused.code, 0)
      assert.match(refused.stderr, /bad user name or password/i)
      const accepted = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'u', '-P', 'right', '-t', 't', '-m', 'x']).done
      assert.equal(accepted.code, 0, accepted.stderr)
    } finally {
      await b.close()
    }
  })
})
