// The floor under any Node broker's latency and per-message cost: a relay on `net` that speaks
// just enough MQTT 3.1.1 for the bench's QoS 0 scenarios (CONNECT → CONNACK, SUBSCRIBE to exact
// topics → SUBACK, PINGREQ → PINGRESP) and writes each PUBLISH, as received, to the sockets
// subscribed to its topic: one write per destination per read, TCP_NODELAY, no sessions, no
// checks. What a Node broker adds on top of Node's own read and write path shows as the
// difference between this and Culex in the same run; see docs/benchmarks.md.
//
// It takes a FlashMQ config (`-c FILE`, of which only `port N` is read) so that the bench can
// run it in FlashMQ's place:
//
//   CULEX_FLASHMQ=bench/relay-floor.sh npm run bench -- --only culex,flashmq --scenarios latency5k
//
// The `flashmq` column then shows this relay.

import { readFileSync } from 'node:fs'
import net from 'node:net'

const conf = process.argv[process.argv.indexOf('-c') + 1]
const port = Number(/^\s*port\s+(\d+)/m.exec(readFileSync(conf ?? '', 'utf8'))?.[1])
if (!Number.isInteger(port)) throw new Error('usage: relay-floor.ts -c <flashmq config with a port line>')

const subscribers = new Map<string, Set<net.Socket>>()
const CONNACK = Buffer.from([0x20, 2, 0, 0])
const PINGRESP = Buffer.from([0xd0, 0])

/** Where each destination's bytes of this read go, written once the read is handled. */
const pending = new Map<net.Socket, Buffer[]>()

function queue(to: net.Socket, bytes: Buffer): void {
  const list = pending.get(to)
  if (list === undefined) pending.set(to, [bytes])
  else list.push(bytes)
}

function flush(): void {
  for (const [to, list] of pending) to.write(list.length === 1 ? (list[0] as Buffer) : Buffer.concat(list))
  pending.clear()
}

function handle(socket: net.Socket, own: string[], packet: Buffer, bodyAt: number): void {
  const type = (packet[0] as number) >> 4
  if (type === 1) queue(socket, CONNACK)
  else if (type === 3) {
    const length = packet.readUInt16BE(bodyAt)
    const topic = packet.toString('latin1', bodyAt + 2, bodyAt + 2 + length)
    for (const to of subscribers.get(topic) ?? []) queue(to, packet)
  } else if (type === 8) {
    const id = packet.readUInt16BE(bodyAt)
    let at = bodyAt + 2
    const granted: number[] = []
    while (at < packet.length) {
      const length = packet.readUInt16BE(at)
      const topic = packet.toString('latin1', at + 2, at + 2 + length)
      at += 2 + length + 1
      let set = subscribers.get(topic)
      if (set === undefined) subscribers.set(topic, (set = new Set()))
      set.add(socket)
      own.push(topic)
      granted.push(0)
    }
    queue(socket, Buffer.from([0x90, 2 + granted.length, id >> 8, id & 0xff, ...granted]))
  } else if (type === 12) queue(socket, PINGRESP)
  else if (type === 14) socket.end()
}

net.createServer((socket) => {
  socket.setNoDelay(true)
  const own: string[] = []
  let rest: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk])
    let at = 0
    for (;;) {
      let length = 0
      let multiplier = 1
      let pos = at + 1
      let complete = false
      while (pos < buf.length) {
        const b = buf[pos++] as number
        length += (b & 0x7f) * multiplier
        multiplier *= 128
        if ((b & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete || pos + length > buf.length) break
      handle(socket, own, buf.subarray(at, pos + length), pos - at)
      at = pos + length
    }
    rest = at === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at))
    flush()
  })
  const leave = (): void => {
    for (const topic of own) subscribers.get(topic)?.delete(socket)
    own.length = 0
  }
  socket.on('close', leave)
  socket.on('error', leave)
}).listen(port, '127.0.0.1')
