/**
 * `GET api/v1/events`: Server-Sent Events, one stats snapshot at once and then every interval,
 * until the client goes away (its timer stops with the response).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { log } from '../logging.js'
import type { DashboardStats } from './api.js'

/** Streams `snapshot()` as `data:` events every `intervalMs` until the response closes. */
export function streamStats(req: IncomingMessage, res: ServerResponse, snapshot: () => DashboardStats, intervalMs: number): void {
  // Gone already (while its credentials were checked): 'close' has fired, nothing would stop a timer.
  if (res.destroyed || req.socket.destroyed) return
  res.statusCode = 200
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8')
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('Connection', 'keep-alive')
  // Proxies that buffer (nginx) pass events through at once.
  res.setHeader('X-Accel-Buffering', 'no')
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  res.flushHeaders()
  req.socket.setNoDelay(true)
  const send = (): void => {
    try {
      res.write(`data: ${JSON.stringify(snapshot())}\n\n`)
    } catch (error) {
      log.error('dashboard events failed: %O', error)
      res.destroy(error instanceof Error ? error : undefined)
    }
  }
  // The browser reconnects after this many ms if the stream breaks.
  res.write(`retry: ${Math.max(1000, intervalMs)}\n\n`)
  send()
  const timer = setInterval(send, intervalMs)
  const stop = (): void => clearInterval(timer)
  res.once('close', stop)
  res.once('error', stop)
}
