/**
 * The dashboard in a real browser: headless Chromium (Debian's package, driven by playwright-core)
 * loads the page mounted under /culex in Express, against a real broker. The page loads without a
 * console error, a client that connects appears in the clients list live, the charts grow with
 * each Server-Sent Event, and the Kick button disconnects the client. The screenshot in
 * docs/dashboard.md is taken here.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { statSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import express from 'express'
import { chromium } from 'playwright-core'
import { dashboard } from '../../src/dashboard/handler.js'
import { freePort, once, skipWithout, withBroker } from '../helpers/index.js'

const CHROMIUM = '/usr/bin/chromium'
/**
 * What the page's predicates see: this file is type-checked without DOM types, so they reach the
 * page's globals through globalThis, each function whole (it is sent to the page as its source).
 * Functions, not strings: the page's Content-Security-Policy forbids eval.
 */
interface PageGlobals {
  document: { getElementById(id: string): { textContent: string | null } | null }
  culexDashboard: { charts: { data: number[][] }[] }
}
/**
 * The screenshot docs/dashboard.md shows: written there when CULEX_SCREENSHOTS=1
 * (`CULEX_SCREENSHOTS=1 node --import tsx --test test/dashboard/browser.test.ts`), else to a
 * temporary file, so that running the tests does not change a tracked file.
 */
const SCREENSHOT = process.env.CULEX_SCREENSHOTS === '1' ? fileURLToPath(new URL('../../docs/images/dashboard.png', import.meta.url)) : join(tmpdir(), `culex-dashboard-${process.pid}.png`)

test('the dashboard page loads without errors, shows a client live, its charts update, Kick disconnects the client, and it lists retained messages (Delete removes one), listeners and bridges', { skip: skipWithout('chromium'), timeout: 60_000 }, async () => {
  await withBroker({ sys: { interval: 1 } }, async (b) => {
    const app = express()
    app.use('/culex', dashboard(b.broker, { title: 'Culex dashboard' }))
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s))
    })
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Root in a container, no network beyond loopback: keep Chromium from reaching out.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
    // Retained messages and a bridge whose remote is down, for their tables.
    await b.broker.publish({ topic: 'plant/1/status', payload: 'running', retain: true, qos: 1 })
    await b.broker.publish({ topic: 'plant/2/status', payload: 'stopped', retain: true, qos: 1 })
    const bridge = await b.broker.bridge({ name: 'cloud', url: `mqtt://127.0.0.1:${await freePort()}`, topics: [{ filter: 'plant/#' }], reconnectPeriod: 200, maxReconnectPeriod: 1000 })
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
      const errors: string[] = []
      page.on('console', (message) => {
        if (message.type() === 'error') errors.push(message.text())
      })
      page.on('pageerror', (error) => errors.push(String(error)))
      await page.goto(`${base}/culex`)
      assert.equal(new URL(page.url()).pathname, '/culex/', 'redirected to the slash, where relative URLs work')
      await page.waitForSelector('#status.live', { timeout: 15000 })
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.getElementById('version')?.textContent !== '–', undefined, { timeout: 15000 })

      // A client connects: the list shows it without a reload.
      const client = await b.connect({ clientId: 'browser-seen', username: 'alice' })
      await client.subscribeAsync('plant/+/temperature', { qos: 1 })
      await b.connect({ clientId: 'another-device', username: 'bob' })
      await page.waitForSelector('tr[data-client="browser-seen"]', { timeout: 15000 })
      assert.match((await page.textContent('tr[data-client="browser-seen"]')) ?? '', /alice/)

      // The charts grow with each event.
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).culexDashboard.charts.every((c) => (c.data[0]?.length ?? 0) >= 4), undefined, { timeout: 15000 })
      // Some traffic for the message chart (and the screenshot): a growing burst per event.
      for (let round = 1; round <= 3; round++) {
        const seen = await page.evaluate(() => (globalThis as unknown as PageGlobals).culexDashboard.charts[0]?.data[0]?.length ?? 0)
        for (let i = 0; i < 10 * round; i++) client.publish('plant/1/temperature', String(20 + i), { qos: 1 })
        await page.waitForFunction((n) => ((globalThis as unknown as PageGlobals).culexDashboard.charts[0]?.data[0]?.length ?? 0) > n, seen, { timeout: 15000 })
      }

      // Details: a click shows the subscriptions.
      await page.click('tr[data-client="browser-seen"] td')
      await page.waitForSelector('#client-detail:not([hidden]) >> text=plant/+/temperature', { timeout: 15000 })
      // Subscriptions, retained messages, listeners and bridges are listed.
      await page.waitForSelector('tr[data-filter="plant/+/temperature"]', { timeout: 15000 })
      await page.waitForSelector('tr[data-topic="plant/2/status"] >> text=stopped', { timeout: 15000 })
      await page.waitForSelector(`#listener-rows >> text=127.0.0.1:${b.port}`, { timeout: 15000 })
      await page.waitForSelector('tr[data-bridge="cloud"] >> text=disconnected', { timeout: 15000 })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      assert.ok(statSync(SCREENSHOT).size > 10_000, 'a screenshot was written')
      if (process.env.CULEX_SCREENSHOTS !== '1') rmSync(SCREENSHOT)

      // Delete: the retained message is gone from the broker and from the table.
      await page.click('button[data-delete="plant/2/status"]')
      await page.waitForSelector('tr[data-topic="plant/2/status"]', { state: 'detached', timeout: 15000 })
      assert.deepEqual(b.broker.getRetained('plant/#').map((m) => m.topic), ['plant/1/status'])

      // Kick: the mqtt client sees its connection close, and the row goes.
      const closed = once(client, 'close', 15000)
      await page.click('button[data-kick="browser-seen"]')
      await closed
      await page.waitForSelector('tr[data-client="browser-seen"]', { state: 'detached', timeout: 15000 })
      assert.ok(b.broker.getClient('another-device') !== undefined, 'the other client stays')
      assert.deepEqual(errors, [], 'no console error')
    } finally {
      await bridge.close()
      await browser.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
