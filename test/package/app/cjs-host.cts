// A CommonJS host (an Express app written with require, say) loading the published ES module
// package with require(), which Node supports from 20.19 and 22.12. test/package/pack.test.ts
// type-checks it in a fresh app against the packed tarball, compiles it to cjs-host.cjs (a plain
// `require("culex-mqtt")`) and runs it: it prints `cjs ok: ...` and exits 0.
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS file: require is the point */
import culex = require('culex-mqtt')
import net = require('node:net')

async function main(): Promise<void> {
  // require() and import() give the same module instance: one Broker class, no dual-package hazard.
  const imported = await import('culex-mqtt')
  if (imported.Broker !== culex.Broker) throw new Error('require() and import() loaded two copies of culex-mqtt')

  const broker: culex.Broker = new culex.Broker({ limits: { maxConnections: 10 } })
  const connected = new Promise<culex.Client>((resolve) => broker.once('clientConnect', resolve))
  const listener: culex.Listener = await broker.listen(culex.tcp({ port: 0, host: '127.0.0.1' }))
  const { port } = listener.address() as net.AddressInfo

  // MQTT 3.1.1 CONNECT, client id "cjs"; the broker answers CONNACK 0.
  const socket = net.connect({ host: '127.0.0.1', port })
  socket.write(Buffer.from([0x10, 15, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 10, 0, 3, 0x63, 0x6a, 0x73]))
  const connack = await new Promise<Buffer>((resolve, reject) => {
    socket.once('data', resolve)
    socket.once('error', reject)
  })
  if (connack.subarray(0, 4).toString('hex') !== '20020000') throw new Error(`unexpected CONNACK ${connack.toString('hex')}`)
  const client = await connected
  await broker.close()
  socket.destroy()
  console.log(`cjs ok: ${typeof culex.Broker} Broker, ${client.id} connected over ${client.transport} on port ${port}`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
