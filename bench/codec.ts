// Micro-benchmark of the wire codec against mqtt-packet (the codec of Aedes and MQTT.js).
//
//   node --import tsx bench/codec.ts            (BENCH_MS=<ms per measurement>, default 750)
//
// For each packet shape it measures packets per second for:
//   decode  our PacketDecoder.push vs mqtt-packet's parser.parse, fed ~64 KiB chunks of
//           back-to-back packets, the way a socket delivers them;
//   encode  our encodePacket vs mqtt-packet's generate, one Buffer per packet.
// The four measurements of a shape are warmed up, then run in ROUNDS interleaved rounds of
// BENCH_MS / ROUNDS each, keeping each one's best round, so that a burst of load from another
// process on the machine hits both libraries alike. The whole run takes about 15 seconds.

import { performance } from 'node:perf_hooks'
import mqttPacket from 'mqtt-packet'
import { PacketDecoder } from '../src/protocol/decoder.js'
import { encodePacket } from '../src/protocol/encoder.js'
import type { Packet, ProtocolVersion, PublishPacket } from '../src/protocol/packets.js'

const MEASURE_MS = Number(process.env.BENCH_MS ?? 750)
const ROUNDS = 3
const WARMUP_MS = Math.min(150, MEASURE_MS / 4)
const CHUNK_TARGET = 64 * 1024

interface Scenario {
  name: string
  version: ProtocolVersion
  packet: PublishPacket
  /** The same packet in mqtt-packet's shape. */
  mqtt: mqttPacket.IPublishPacket
}

function scenario(name: string, version: ProtocolVersion, qos: 0 | 1, payloadSize: number, userProperty = false): Scenario {
  const payload = Buffer.alloc(payloadSize, 0x61)
  const packet: PublishPacket = { type: 'publish', topic: 'bench/topic/1', payload, qos, retain: false, dup: false, packetId: qos > 0 ? 42 : 0 }
  const mqtt: mqttPacket.IPublishPacket = { cmd: 'publish', topic: 'bench/topic/1', payload, qos, retain: false, dup: false }
  if (qos > 0) mqtt.messageId = 42
  if (userProperty) {
    packet.properties = { userProperties: [['trace', 'abc123']] }
    mqtt.properties = { userProperties: { trace: 'abc123' } }
  }
  return { name, version, packet, mqtt }
}

const SCENARIOS: Scenario[] = [
  scenario('PUBLISH QoS 0, 64 B', 4, 0, 64),
  scenario('PUBLISH QoS 1, 64 B', 4, 1, 64),
  scenario('PUBLISH QoS 0, 16 KiB', 4, 0, 16 * 1024),
  scenario('PUBLISH QoS 1, 64 B, MQTT 5 + user prop', 5, 1, 64, true),
]

let sink = 0

/** Runs `batch` (which handles `perBatch` packets) for `ms`; returns packets per second. */
function timed(batch: () => void, perBatch: number, ms: number): number {
  let packets = 0
  const start = performance.now()
  let now = start
  while (now - start < ms) {
    for (let i = 0; i < 8; i++) batch()
    packets += 8 * perBatch
    now = performance.now()
  }
  return (packets * 1000) / (now - start)
}

interface Job {
  batch: () => void
  perBatch: number
}

/** Warms every job up, then runs them in interleaved rounds; returns each one's best rate. */
function measure(jobs: Job[]): number[] {
  for (const job of jobs) timed(job.batch, job.perBatch, WARMUP_MS)
  const best = jobs.map(() => 0)
  for (let round = 0; round < ROUNDS; round++) {
    jobs.forEach((job, i) => {
      best[i] = Math.max(best[i] as number, timed(job.batch, job.perBatch, MEASURE_MS / ROUNDS))
    })
  }
  return best
}

interface Row {
  scenario: string
  op: 'decode' | 'encode'
  culex: number
  mqttPacket: number
}

function run(s: Scenario): Row[] {
  const encoded = encodePacket(s.packet, s.version)
  // The two encoders must agree before their speed means anything.
  const theirs = mqttPacket.generate(s.mqtt, { protocolVersion: s.version })
  if (!theirs.equals(encoded)) throw new Error(`${s.name}: culex and mqtt-packet encode differently`)

  const perChunk = Math.max(1, Math.floor(CHUNK_TARGET / encoded.length))
  const chunk = Buffer.concat(Array.from({ length: perChunk }, () => encoded))

  const decoder = new PacketDecoder((p: Packet) => {
    if (p.type === 'publish') sink += p.payload.length
  })
  decoder.protocolVersion = s.version
  const parser = mqttPacket.parser({ protocolVersion: s.version })
  parser.on('packet', (p: mqttPacket.Packet) => {
    if (p.cmd === 'publish') sink += (p.payload as Buffer).length
  })
  parser.on('error', (e: Error) => {
    throw e
  })
  const opts = { protocolVersion: s.version }

  const [decodeCulex, decodeMqtt, encodeCulex, encodeMqtt] = measure([
    { batch: () => decoder.push(chunk), perBatch: perChunk },
    { batch: () => parser.parse(chunk), perBatch: perChunk },
    { batch: () => { sink += encodePacket(s.packet, s.version).length }, perBatch: 1 },
    { batch: () => { sink += mqttPacket.generate(s.mqtt, opts).length }, perBatch: 1 },
  ]) as [number, number, number, number]
  if (sink === 0) throw new Error('nothing was decoded')
  return [
    { scenario: s.name, op: 'decode', culex: decodeCulex, mqttPacket: decodeMqtt },
    { scenario: s.name, op: 'encode', culex: encodeCulex, mqttPacket: encodeMqtt },
  ]
}

function rate(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : `${(n / 1e3).toFixed(0)} k/s`
}

function table(rows: Row[]): string {
  const header = ['packet', 'op', 'culex', 'mqtt-packet', 'culex / mqtt-packet']
  const body = rows.map((r) => [r.scenario, r.op, rate(r.culex), rate(r.mqttPacket), `${(r.culex / r.mqttPacket).toFixed(2)}x`])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] as string).length)))
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}

const started = performance.now()
const rows = SCENARIOS.flatMap(run)
console.log(`codec micro-benchmark: node ${process.version}, best of ${ROUNDS} rounds in ${MEASURE_MS} ms per measurement, decode fed ~64 KiB chunks\n`)
console.log(table(rows))
console.log(`\n(${((performance.now() - started) / 1000).toFixed(1)} s; checksum ${sink % 997})`)
