// The package ships no types; the bench only calls its factory (bench/broker-process.ts).
declare module 'aedes-persistence-redis' {
  /** Takes ioredis options (host, port, ...) and returns an Aedes persistence. */
  export default function aedesPersistenceRedis(options?: Record<string, unknown>): unknown
}
