/**
 * The `authorizeDeliver(client, message)` hook: asked per subscriber for every routed message and
 * per retained message a new subscription would get; a refusal drops the message for that client
 * alone (counted in `denied.deliver` and `dropped.not_authorized`), also for an offline
 * persistent session (not queued); a hook that throws refuses and is reported on `hostError`.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Client, HostErrorSource, Message } from '../../src/index.js'
import { Broker, MemoryPersistence, tcp } from '../../src/index.js'
import { fence, Inbox, leave, ping, withBroker } from '../helpers/index.js'
import mqtt from 'mqtt'

describe('authorizeDeliver', { timeout: 20_000 }, () => {
  test('is asked per subscriber: of two subscribers, the refused one does not get the message, the other does', async () => {
    const asked: Array<[string, string]> = []
    const authorizeDeliver = (client: Client, message: Message): boolean => {
      asked.push([client.id, message.topic])
      return !(client.id === 'bob' && message.topic === 'news/secret')
    }
    await withBroker({ authorizeDeliver }, async (b) => {
      const alice = await b.connectRecorded({ clientId: 'alice' })
      const bob = await b.connectRecorded({ clientId: 'bob' })
      await alice.client.subscribeAsync('news/#', { qos: 1 })
      await bob.client.subscribeAsync('news/#', { qos: 1 })
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('news/secret', 'classified', { qos: 1 })
      await alice.inbox.waitFor('classified')
      // The marker (allowed to both) follows the refused message to bob on the same path.
      await fence(b, 'news/fence', bob.inbox)
      assert.deepEqual(bob.inbox.messages.map((m) => m.payload), ['fence'], 'bob got only the marker')
      assert.ok(asked.some(([id, topic]) => id === 'bob' && topic === 'news/secret'), 'the hook was asked about bob')
      assert.ok(asked.some(([id, topic]) => id === 'alice' && topic === 'news/secret'), 'the hook was asked about alice')
      const s = b.broker.stats()
      assert.equal(s.denied.deliver, 1)
      assert.equal(s.messages.dropped.not_authorized, 1)
    })
  })

  test('is asked per retained message on subscribe: the refused retained message is not sent', async () => {
    const authorizeDeliver = (_client: Client, message: Message): boolean => message.topic !== 'r/secret'
    await withBroker({ authorizeDeliver }, async (b) => {
      await b.broker.publish({ topic: 'r/public', payload: 'shown', qos: 1, retain: true })
      await b.broker.publish({ topic: 'r/secret', payload: 'hidden', qos: 1, retain: true })
      const sub = await b.connectRecorded({ clientId: 'reader' })
      await sub.client.subscribeAsync('r/#', { qos: 1 })
      await sub.inbox.waitFor('shown')
      // The retained messages follow the SUBACK at once; a PINGRESP after them proves they are all in.
      await ping(sub.client)
      assert.deepEqual(sub.inbox.messages.map((m) => [m.topic, m.payload, m.retain]), [['r/public', 'shown', true]])
      const s = b.broker.stats()
      assert.equal(s.denied.deliver, 1)
      assert.equal(s.messages.dropped.not_authorized, 1)
      assert.equal(s.retained.count, 2, 'the refused message stays retained for others')
    })
  })

  test('an offline persistent session: a refused message is not queued; the hook sees the client offline', async () => {
    const seen: Array<{ topic: string; connected: boolean; id: string }> = []
    const authorizeDeliver = (client: Client, message: Message): boolean => {
      seen.push({ topic: message.topic, connected: client.connected, id: client.id })
      return message.topic !== 'off/secret'
    }
    await withBroker({ authorizeDeliver }, async (b) => {
      const first = await b.connect({ clientId: 'sleeper', clean: false })
      await first.subscribeAsync('off/#', { qos: 1 })
      await leave(b, first)
      await b.broker.publish({ topic: 'off/secret', payload: 'no', qos: 1 })
      await b.broker.publish({ topic: 'off/ok', payload: 'yes', qos: 1 })
      assert.equal(b.broker.getSession('sleeper')?.queued, 1, 'only the allowed message is queued')
      assert.deepEqual(seen, [
        { topic: 'off/secret', connected: false, id: 'sleeper' },
        { topic: 'off/ok', connected: false, id: 'sleeper' },
      ])
      const back = await b.connectRecorded({ clientId: 'sleeper', clean: false })
      await back.inbox.waitFor('yes')
      await ping(back.client)
      assert.deepEqual(back.inbox.messages.map((m) => m.payload), ['yes'])
      assert.equal(b.broker.stats().denied.deliver, 1)
      assert.equal(b.broker.stats().messages.dropped.not_authorized, 1)
    })
  })

  test('a hook that throws refuses the message and is reported on hostError (hook authorizeDeliver); the client stays connected', async () => {
    const authorizeDeliver = (_client: Client, message: Message): boolean => {
      if (message.topic === 't/boom') throw new Error('acl backend down')
      return true
    }
    await withBroker({ authorizeDeliver }, async (b) => {
      const errors: Array<[Error, HostErrorSource]> = []
      b.broker.on('hostError', (error, source) => errors.push([error, source]))
      const sub = await b.connectRecorded({ clientId: 'sub' })
      await sub.client.subscribeAsync('t/#', { qos: 1 })
      await b.broker.publish({ topic: 't/boom', payload: 'leak?', qos: 1 })
      await b.broker.publish({ topic: 't/fine', payload: 'after', qos: 1 })
      await sub.inbox.waitFor('after')
      assert.deepEqual(sub.inbox.messages.map((m) => m.payload), ['after'], 'the message the hook threw on was not delivered')
      assert.equal(errors.length, 1)
      const [error, source] = errors[0] as [Error, HostErrorSource]
      assert.equal(error.message, 'acl backend down')
      assert.deepEqual(source, { kind: 'hook', hook: 'authorizeDeliver', clientId: 'sub' })
      assert.equal(sub.client.connected, true)
      assert.equal(b.broker.getClient('sub')?.connected, true)
      assert.equal(b.broker.stats().denied.deliver, 1)
      assert.equal(b.broker.stats().messages.dropped.not_authorized, 1)
    })
  })

  test('after a restart, messages for an offline session whose user is not known yet are judged when its client is back', async () => {
    // Only alice may read alice/#: the restored session's user name is unknown until she connects.
    const authorizeDeliver = (client: Client, message: Message): boolean => client.username === 'alice' && message.topic.startsWith('alice/')
    const store = new MemoryPersistence()
    const first = new Broker({ persistence: store, authorizeDeliver, sys: { interval: 0 } })
    const firstPort = ((await first.listen(tcp({ port: 0, host: '127.0.0.1' }))).address() as { port: number }).port
    const alice = mqtt.connect({ port: firstPort, host: '127.0.0.1', clientId: 'alice-phone', username: 'alice', clean: false, reconnectPeriod: 0 })
    await new Promise((resolve) => alice.once('connect', resolve))
    await alice.subscribeAsync('#', { qos: 1 })
    await alice.endAsync()
    await first.close()

    const second = new Broker({ persistence: store, authorizeDeliver, sys: { interval: 0 } })
    const port = ((await second.listen(tcp({ port: 0, host: '127.0.0.1' }))).address() as { port: number }).port
    try {
      await second.publish({ topic: 'alice/inbox', payload: 'for alice', qos: 1 })
      await second.publish({ topic: 'bob/inbox', payload: 'for bob', qos: 1 })
      assert.equal(second.getSession('alice-phone')?.queued, 2, 'both wait: the user is not known yet')
      const back = mqtt.connect({ port, host: '127.0.0.1', clientId: 'alice-phone', username: 'alice', clean: false, reconnectPeriod: 0 })
      const inbox = new Inbox(back)
      await new Promise((resolve) => back.once('connect', resolve))
      await inbox.waitFor('for alice')
      await second.publish({ topic: 'alice/fence', payload: 'fence', qos: 1 })
      await inbox.waitFor('fence')
      assert.deepEqual(inbox.messages.map((m) => m.payload), ['for alice', 'fence'], "bob's message was judged, and refused, when sent")
      assert.equal(second.stats().denied.deliver, 1)
      await back.endAsync()
    } finally {
      await second.close()
    }
  })

  test('a queued message is judged again when sent: another user taking the client id does not get what was queued for the first', async () => {
    const authorizeDeliver = (client: Client, message: Message): boolean => message.topic.startsWith(`${client.username}/`)
    await withBroker({ authorizeDeliver }, async (b) => {
      const alice = await b.connect({ clientId: 'shared-device', username: 'alice', clean: false })
      await alice.subscribeAsync('#', { qos: 1 })
      await leave(b, alice)
      await b.broker.publish({ topic: 'alice/secret', payload: 'for alice', qos: 1 })
      assert.equal(b.broker.getSession('shared-device')?.queued, 1, 'judged for alice, and queued')
      const mallory = await b.connectRecorded({ clientId: 'shared-device', username: 'mallory', clean: false })
      await b.broker.publish({ topic: 'mallory/fence', payload: 'fence', qos: 1 })
      await mallory.inbox.waitFor('fence')
      assert.deepEqual(mallory.inbox.messages.map((m) => m.payload), ['fence'], "alice's message is not sent to mallory")
    })
  })
})
