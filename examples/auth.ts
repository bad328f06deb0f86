// Username/password and client-id authentication, with per-topic rules.
// Run: npx tsx examples/auth.ts   then: mosquitto_pub -u alice -P wonderland -i device-alice -t devices/device-alice/status -m up
import { scryptSync, timingSafeEqual, randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { Broker, ConnackReturnCode, tcp, type Client } from 'culex-mqtt'

// Passwords are stored as salted scrypt hashes, never in clear.
function hash(password: string, salt = randomBytes(16)): { salt: Buffer; key: Buffer } {
  return { salt, key: scryptSync(password, salt, 32) }
}
const users = new Map([
  ['alice', hash('wonderland')],
  ['bob', hash('builder')],
])

function passwordMatches(username: string, password: Buffer): boolean {
  const user = users.get(username)
  if (!user) return false
  return timingSafeEqual(scryptSync(password, user.salt, 32), user.key)
}

const broker = new Broker({
  // Who may connect: a known user with the right password, whose client id is `device-<username>`.
  authenticate: ({ clientId, username, password }) => {
    if (username === undefined || password === undefined || !passwordMatches(username, password)) return false
    if (clientId !== `device-${username}`) return { reasonCode: ConnackReturnCode.IdentifierRejected }
    return true
  },
  // Devices publish only under their own topic tree.
  authorizePublish: (client: Client, message) => message.topic.startsWith(`devices/${client.id}/`),
  // Devices read their own tree and public topics; nobody may subscribe to test/nosubscribe.
  authorizeSubscribe: (client, subscription) => {
    const filter = subscription.topicFilter
    if (filter === 'test/nosubscribe') return false
    if (filter.startsWith(`devices/${client.id}/`) || filter.startsWith('public/')) return true
    return false
  },
})

broker.on('clientConnect', (client) => console.log(`connected: ${client.id} as ${client.username}`))

const listener = await broker.listen(tcp({ port: Number(process.env.PORT ?? 1883) }))
console.log(`listening on port ${(listener.address() as AddressInfo).port}`)

process.once('SIGINT', () => void broker.close())
process.once('SIGTERM', () => void broker.close())
