/**
 * A real browser: headless Chromium (Debian's package, driven by playwright-core) loads the page
 * served by examples/express.ts, which connects over MQTT-over-WebSocket with the mqtt browser
 * bundle and shows what the app publishes.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { chromium } from 'playwright-core'
import { skipWithout } from '../helpers.js'
import { runExample } from './run-example.js'

const CHROMIUM = '/usr/bin/chromium'

test('a browser page subscribes over WebSocket and shows a message the app publishes', { skip: skipWithout('chromium') }, async () => {
  const example = runExample('express.ts', { PORT: '0' })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container, no network beyond loopback: keep Chromium from reaching out.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    const port = Number((await example.waitFor(/listening on port (\d+)/))[1])
    const page = await browser.newPage()
    await page.goto(`http://127.0.0.1:${port}/`)
    // Functions evaluated in the page are given as strings: this file is type-checked without DOM types.
    await page.waitForFunction("document.getElementById('status')?.textContent === 'subscribed'", undefined, { timeout: 15000 })
    const response = await fetch(`http://127.0.0.1:${port}/news`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello from the server' }),
    })
    assert.equal(response.status, 202)
    await page.waitForFunction("document.querySelector('#messages li')?.textContent === 'hello from the server'", undefined, { timeout: 15000 })
    assert.equal(await page.textContent('#messages li'), 'hello from the server')
  } finally {
    await browser.close()
    assert.equal(await example.stop(), 0)
  }
})
