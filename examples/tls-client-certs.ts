// Devices authenticated by TLS client certificate: the certificate's CN is the device's identity.
// Run: CA=ca.crt KEY=server.key CERT=server.crt npx tsx examples/tls-client-certs.ts
//      mosquitto_pub -p 8883 --cafile ca.crt --cert device-42.crt --key device-42.key -i device-42 -t devices/device-42/up -m hi
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { Broker, ConnackReturnCode, tls } from 'culex-mqtt'

const file = (name: string): Buffer => readFileSync(process.env[name] ?? `${name.toLowerCase()}.pem`)

const broker = new Broker({
  // The TLS layer already checked the certificate against the CA; here it becomes an identity:
  // a device must use its certificate's CN as its client id.
  authenticate: ({ clientId, certificate }) => {
    const cn = certificate?.subject.CN
    if (typeof cn !== 'string') return { reasonCode: ConnackReturnCode.NotAuthorized }
    return cn === clientId ? true : { reasonCode: ConnackReturnCode.IdentifierRejected }
  },
  // Each device publishes only under its own topic tree.
  authorizePublish: (client, message) => message.topic.startsWith(`devices/${client.id}/`),
})

broker.on('clientConnect', (client) => console.log(`device ${client.id} connected (certificate ${client.certificate?.fingerprint256.slice(0, 23)}...)`))

const listener = await broker.listen(
  tls({
    port: Number(process.env.PORT ?? 8883),
    ca: file('CA'),
    key: file('KEY'),
    cert: file('CERT'),
    requestCert: true,
    rejectUnauthorized: true,
  }),
)
console.log(`listening on port ${(listener.address() as AddressInfo).port}`)

process.once('SIGINT', () => void broker.close())
process.once('SIGTERM', () => void broker.close())
