// The floor under any Node broker's memory per idle connection: a bare `net` server that only
// keeps its sockets (one 'data' listener each, no MQTT), measured like the bench's memory
// scenarios (RSS and heap after a forced GC, before and after the clients connect, clients in
// another process). Culex's RSS per idle connection cannot go below this while it uses
// net.Socket; see docs/benchmarks.md.
//
//   node --expose-gc --import tsx bench/socket-floor.ts [clients=10000]

import { fork } from 'node:child_process'
import net from 'node:net'

const clients = Number(process.argv[2] === 'client' ? 0 : process.argv[2] ?? 10_000)
const BATCH = 100

async function runClients(port: number, count: number): Promise<void> {
  const sockets: net.Socket[] = []
  for (let i = 0; i < count; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, count - i) }, () => new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write('hello')
          resolve()
        })
        socket.on('error', reject)
        sockets.push(socket)
      })),
    )
  }
  process.send?.('ready')
  // Kept open until the parent kills this process.
  setInterval(() => sockets.length, 60_000)
}

async function measure(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc')
  const held: net.Socket[] = []
  const server = net.createServer((socket) => {
    held.push(socket)
    socket.on('data', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  gc()
  const before = process.memoryUsage()
  const child = fork(new URL(import.meta.url).pathname, ['client', String(port), String(clients)], { execArgv: ['--import', 'tsx'] })
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`client process exited (${code})`)))
  })
  // Let the last greetings be read before measuring.
  await new Promise((resolve) => setTimeout(resolve, 300))
  gc()
  gc()
  const after = process.memoryUsage()
  const kib = (bytes: number): string => (bytes / clients / 1024).toFixed(2)
  console.log(`bare net server, ${held.length} idle sockets: RSS ${kib(after.rss - before.rss)} KiB and heap ${kib(after.heapUsed - before.heapUsed)} KiB per connection`)
  child.kill()
  server.close()
  for (const socket of held) socket.destroy()
}

if (process.argv[2] === 'client') await runClients(Number(process.argv[3]), Number(process.argv[4]))
else await measure()
