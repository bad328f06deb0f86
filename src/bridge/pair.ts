import { Duplex } from 'node:stream'

/**
 * Two in-memory Duplex streams wired to each other: what one writes the other reads. Ending or
 * destroying one ends the other, as a closed socket would.
 */
export function duplexPair(): [Duplex, Duplex] {
  const make = (peer: () => Duplex): Duplex =>
    new Duplex({
      allowHalfOpen: false,
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        const other = peer()
        if (!other.destroyed) other.push(chunk)
        callback()
      },
      final(callback) {
        const other = peer()
        if (!other.destroyed) other.push(null)
        callback()
      },
      destroy(error, callback) {
        const other = peer()
        if (!other.destroyed) other.destroy()
        callback(error)
      },
    })
  const a: Duplex = make(() => b)
  const b: Duplex = make(() => a)
  return [a, b]
}
