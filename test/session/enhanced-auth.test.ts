/**
 * MQTT 5 enhanced authentication: a real two-step challenge/response (HMAC over both nonces,
 * SCRAM-style) run by the enhancedAuthenticate hook, then re-authentication on the same connection.
 */
import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import type { EnhancedAuthenticateHook } from '../../src/index.js'
import type { ConnackPacket, Properties } from '../../src/protocol/packets.js'
import { startBroker, type RawMqtt, type TestBroker } from '../helpers/index.js'

const METHOD = 'HMAC-CHALLENGE'
const secrets = new Map([['alice', Buffer.from('correct horse battery staple')]])
const hmac = (key: Buffer, ...parts: Buffer[]): Buffer => createHmac('sha256', key).update(Buffer.concat(parts)).digest()

/** The server side: step 1 answers the client nonce with a server nonce; step 2 checks the client's proof. */
const enhancedAuthenticate: EnhancedAuthenticateHook = async ({ method, data, username, state }) => {
  if (method !== METHOD) return { reasonCode: 0x8c }
  const secret = username === undefined ? undefined : secrets.get(username)
  if (secret === undefined || data === undefined) return { reasonCode: 0x86 }
  if (state === undefined) {
    const serverNonce = randomBytes(16)
    return { continue: serverNonce, state: { clientNonce: data, serverNonce } }
  }
  const { clientNonce, serverNonce } = state as { clientNonce: Buffer; serverNonce: Buffer }
  if (!data.equals(hmac(secret, clientNonce, serverNonce))) return { reasonCode: 0x86, reasonString: 'bad proof' }
  return { success: true, data: hmac(secret, serverNonce, clientNonce) }
}

/** Runs the client side of the exchange; returns the peer and the final server proof check. */
async function login(b: TestBroker, secret: Buffer): Promise<{ peer: RawMqtt; connack: ConnackPacket; clientNonce: Buffer; serverNonce: Buffer }> {
  const peer = await b.raw(5)
  const clientNonce = randomBytes(16)
  const properties: Properties = { authenticationMethod: METHOD, authenticationData: clientNonce }
  peer.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId: 'alice-device', username: 'alice', properties })
  const challenge = await peer.next('auth')
  // [MQTT-3.15.2-1] the server continues with AUTH 0x18 and the same method
  assert.equal(challenge.reasonCode, 0x18)
  assert.equal(challenge.properties?.authenticationMethod, METHOD)
  const serverNonce = challenge.properties?.authenticationData as Buffer
  peer.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: hmac(secret, clientNonce, serverNonce) } })
  const connack = await peer.next('connack')
  return { peer, connack, clientNonce, serverNonce }
}

test('a two-step challenge/response admits a client that proves the secret, and the server proves it back', async () => {
  const b = await startBroker({ enhancedAuthenticate })
  try {
    const secret = secrets.get('alice') as Buffer
    const { peer, connack, clientNonce, serverNonce } = await login(b, secret)
    assert.equal(connack.returnCode, 0)
    assert.equal(connack.properties?.authenticationMethod, METHOD)
    assert.ok((connack.properties?.authenticationData as Buffer).equals(hmac(secret, serverNonce, clientNonce)), 'server proof')
    // The connection works.
    peer.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'x', qos: 0 }] })
    assert.deepEqual((await peer.next('suback')).reasonCodes, [0])
    peer.socket.destroy()
  } finally {
    await b.close()
  }
})

test('a wrong proof is refused with CONNACK 0x86 and the reason string', async () => {
  const b = await startBroker({ enhancedAuthenticate })
  try {
    const { connack } = await login(b, Buffer.from('wrong secret'))
    assert.equal(connack.returnCode, 0x86)
    assert.equal(connack.properties?.reasonString, 'bad proof')
  } finally {
    await b.close()
  }
})

test('re-authentication (AUTH 0x19) runs the exchange again and ends with AUTH 0x00; a bad one disconnects', async () => {
  const b = await startBroker({ enhancedAuthenticate })
  try {
    const secret = secrets.get('alice') as Buffer
    const { peer, connack } = await login(b, secret)
    assert.equal(connack.returnCode, 0)
    for (const [key, expected] of [[secret, 0x00], [Buffer.from('stolen?'), 0x86]] as const) {
      const clientNonce = randomBytes(16)
      peer.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: METHOD, authenticationData: clientNonce } })
      const challenge = await peer.next('auth')
      assert.equal(challenge.reasonCode, 0x18)
      const serverNonce = challenge.properties?.authenticationData as Buffer
      peer.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: hmac(key, clientNonce, serverNonce) } })
      if (expected === 0) {
        const done = await peer.next('auth')
        assert.equal(done.reasonCode, 0x00)
      } else {
        // [MQTT-4.12.1-2] a failed re-authentication: DISCONNECT with a reason code, then close
        const disconnect = await peer.next('disconnect')
        assert.equal(disconnect.reasonCode, 0x86)
      }
    }
  } finally {
    await b.close()
  }
})

test('an authentication method with no enhancedAuthenticate hook gets CONNACK 0x8C', async () => {
  const b = await startBroker()
  try {
    const peer = await b.raw(5)
    peer.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId: 'c', properties: { authenticationMethod: 'KERBEROS' } })
    assert.equal((await peer.next('connack')).returnCode, 0x8c)
  } finally {
    await b.close()
  }
})
