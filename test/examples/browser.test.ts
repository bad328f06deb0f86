/**
 * A real browser: headless Chromium (Debian's package, driven by playwright-core) loads the page
 * served by examples/express.ts, which sets a session cookie; the page connects over
 * MQTT-over-WebSocket with the mqtt browser bundle, the browser sending that cookie with the
 * upgrade request, and shows what the app publishes. Without the cookie the broker refuses it.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { chromium } from 'playwright-core'
import { skipWithout } from '../helpers/index.js'
import { runExample } from './run-example.js'

const CHROMIUM = '/usr/bin/chromium'

/** In the page: connects again with the mqtt bundle; resolves to 'connected' or the refusal's CONNACK code. */
const CONNECT_AGAIN = `new Promise((resolve) => {
  const c = mqtt.connect('ws://' + location.host + '/mqtt', { clientId: 'again-' + Math.random().toString(16).slice(2), reconnectPeriod: 0 })
  c.on('connect', () => { c.end(true); resolve('connected') })
  c.on('error', (e) => { c.end(true); resolve(e.code) })
})`

test('a browser page holding the session cookie subscribes over WebSocket and shows a message the app publishes; without the cookie it is refused', { skip: skipWithout('chromium') }, async () => {
  const example = runExample('express.ts', { PORT: '0' })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container, no network beyond loopback: keep Chromium from reaching out.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://127.0.0.1:${port}/`)
    assert.ok((await context.cookies()).some((c) => c.name === 'session' && c.httpOnly), 'the page set an HttpOnly session cookie')
    // Functions evaluated in the page are given as strings: this file is type-checked without DOM types.
    await page.waitForFunction("['subscribed', 'refused'].some((s) => document.getElementById('status')?.textContent?.startsWith(s))", undefined, { timeout: 15000 })
    assert.equal(await page.textContent('#status'), 'subscribed')
    const response = await fetch(`http://127.0.0.1:${port}/news`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello from the server' }),
    })
    assert.equal(response.status, 202)
    await page.waitForFunction("document.querySelector('#messages li')?.textContent === 'hello from the server'", undefined, { timeout: 15000 })
    assert.equal(await page.textContent('#messages li'), 'hello from the server')

    // The same page, the cookie gone: the browser's upgrade request carries none, and the broker refuses it.
    assert.equal(await page.evaluate(CONNECT_AGAIN), 'connected')
    await context.clearCookies()
    assert.equal(await page.evaluate(CONNECT_AGAIN), 5)
  } finally {
    await browser.close()
    assert.equal(await example.stop(), 0)
  }
})
