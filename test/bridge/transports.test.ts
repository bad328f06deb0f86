/**
 * Outgoing bridges over every URL scheme MQTT.js speaks: mqtts:// (TLS, the remote's certificate
 * checked against a CA given in `tls`), ws:// and wss://, to a second Culex broker listening on
 * those transports. A message published on one side arrives on the other, both ways.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { tls, websocket } from '../../src/index.js'
import type { BridgeHandle, BridgeOptions } from '../../src/bridge/options.js'
import { makePki } from '../transports/certificates.js'
import { Inbox, skipWithout, until, withBroker } from '../helpers/index.js'

test('bridges over mqtts://, ws:// and wss:// carry messages out and in', { skip: skipWithout('openssl'), timeout: 60_000 }, async () => {
  const pki = makePki()
  await withBroker({}, async (remote) => {
    const tlsPort = ((await remote.broker.listen(tls({ port: 0, host: '127.0.0.1', key: pki.serverKey, cert: pki.serverCert }))).address() as AddressInfo).port
    const wsPort = ((await remote.broker.listen(websocket({ port: 0, host: '127.0.0.1' }))).address() as AddressInfo).port
    const https: Server = createServer({ key: pki.serverKey, cert: pki.serverCert })
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
    await remote.broker.listen(websocket({ server: https }))
    const wssPort = (https.address() as AddressInfo).port
    try {
      await withBroker({}, async (local) => {
        const schemes: Array<[string, Partial<BridgeOptions>]> = [
          [`mqtts://localhost:${tlsPort}`, { tls: { ca: pki.ca } }],
          [`ws://127.0.0.1:${wsPort}/mqtt`, { protocolVersion: 5 }],
          [`wss://localhost:${wssPort}/mqtt`, { tls: { ca: pki.ca } }],
        ]
        const names = ['tls', 'ws', 'wss']
        const handles: BridgeHandle[] = []
        for (const [i, [url, extra]] of schemes.entries()) {
          const name = names[i] as string
          handles.push(
            await local.broker.bridge({
              name,
              url,
              topics: [
                { filter: '#', direction: 'out', localPrefix: `up/${name}/`, remotePrefix: `site/${name}/` },
                { filter: '#', direction: 'in', localPrefix: `down/${name}/`, remotePrefix: `cmd/${name}/` },
              ],
              ...extra,
            }),
          )
        }
        await until(() => handles.every((h) => h.connected), 15_000, 'the three bridges to connect')
        await until(() => names.every((n) => remote.broker.getSubscriptions(`culex-bridge-${n}`)?.length === 1), 15_000, "the bridges' subscriptions on the remote")

        const remoteSub = await remote.connect({ clientId: 'remote-sub' })
        const atRemote = new Inbox(remoteSub)
        await remoteSub.subscribeAsync('site/#', { qos: 1 })
        const localSub = await local.connect({ clientId: 'local-sub' })
        const atLocal = new Inbox(localSub)
        await localSub.subscribeAsync('down/#', { qos: 1 })
        const localPub = await local.connect({ clientId: 'local-pub' })
        const remotePub = await remote.connect({ clientId: 'remote-pub' })
        for (const name of names) {
          await localPub.publishAsync(`up/${name}/t`, `out over ${name}`, { qos: 1 })
          await remotePub.publishAsync(`cmd/${name}/c`, `in over ${name}`, { qos: 1 })
        }
        await atRemote.waitCount(3, 10_000)
        await atLocal.waitCount(3, 10_000)
        assert.deepEqual(atRemote.messages.map((m) => [m.topic, m.payload]).sort(), names.map((n) => [`site/${n}/t`, `out over ${n}`]).sort())
        assert.deepEqual(atLocal.messages.map((m) => [m.topic, m.payload]).sort(), names.map((n) => [`down/${n}/c`, `in over ${n}`]).sort())
        assert.deepEqual(
          remote.broker.clients.filter((c) => c.id.startsWith('culex-bridge-')).map((c) => [c.id, c.transport]).sort(),
          [['culex-bridge-tls', 'tls'], ['culex-bridge-ws', 'ws'], ['culex-bridge-wss', 'wss']],
        )
      })
    } finally {
      https.closeAllConnections()
      await new Promise((resolve) => https.close(resolve))
    }
  })
})
