// The Culex dashboard: one plain ES module, no framework. Figures arrive over Server-Sent Events
// (api/v1/events, a stats snapshot every second); the history for the charts is kept here, in the
// browser (two hours). Every URL is relative to the page, so the dashboard works under any prefix.
/* global document, window, fetch, EventSource, setTimeout, clearTimeout, setInterval */
import uPlot from './vendor/uPlot.esm.js'

const HISTORY = 7200
const $ = (id) => document.getElementById(id)

/** An element with text or children; never HTML from the broker. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'className') node.className = value
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value)
    else node.setAttribute(name, value)
  }
  for (const child of children) node.append(child instanceof window.Node ? child : String(child ?? ''))
  return node
}

const bytes = (n) => (n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + ' GB' : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MB' : (n / 1024).toFixed(0) + ' kB')
const sum = (values) => Object.values(values).reduce((a, b) => a + b, 0)
const time = (ms) => (ms == null ? '–' : new Date(ms).toLocaleString())
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60)
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`
}
const PROTOCOL = { 3: 'MQTT 3.1', 4: 'MQTT 3.1.1', 5: 'MQTT 5' }

// Charts: one array per series, the first the time axis (seconds), as uPlot wants them.
const messages = [[], [], [], []]
const clients = [[], []]
const proc = [[], [], []]
function chart(target, data, series) {
  const width = () => Math.max(300, target.parentElement.clientWidth - 16)
  const plot = new uPlot({ width: width(), height: 180, series: [{}, ...series], axes: [{}, { size: 60 }], legend: { live: false } }, data, target)
  window.addEventListener('resize', () => plot.setSize({ width: width(), height: 180 }))
  return plot
}
const charts = [
  chart($('chart-messages'), messages, [
    { label: 'in', stroke: '#2563eb', width: 2 },
    { label: 'out', stroke: '#16a34a', width: 2, dash: [6, 4] },
    { label: 'dropped', stroke: '#dc2626', width: 2 },
  ]),
  chart($('chart-clients'), clients, [{ label: 'connected', stroke: '#7c3aed', width: 2, fill: 'rgba(124,58,237,0.08)' }]),
  chart($('chart-process'), proc, [
    { label: 'lag ms', stroke: '#ea580c', width: 2 },
    { label: 'heap MB', stroke: '#0891b2', width: 2 },
  ]),
]
// For scripts and tests: the charts and their data.
window.culexDashboard = { charts }

function push(data, values) {
  values.forEach((v, i) => data[i].push(v))
  if (data[0].length > HISTORY) for (const series of data) series.shift()
}

let previous
let clientChanges = -1
function onStats(s) {
  const t = s.time / 1000
  const received = sum(s.messages.received), sent = sum(s.messages.sent), dropped = sum(s.messages.dropped)
  let rates = [0, 0, 0]
  if (previous !== undefined && t > previous.t) {
    const dt = t - previous.t
    rates = [(received - previous.received) / dt, (sent - previous.sent) / dt, (dropped - previous.dropped) / dt].map((r) => Math.max(0, r))
  }
  previous = { t, received, sent, dropped }
  $('version').textContent = s.version + (s.nodeId ? ` (${s.nodeId})` : '')
  $('uptime').textContent = duration(s.uptimeSeconds)
  $('connections').textContent = String(s.connections.open)
  $('clients-connected').textContent = `${s.clients.connected} (max ${s.clients.maximum})`
  $('sessions').textContent = `${s.clients.total} (${s.clients.disconnected} offline)`
  $('subscriptions').textContent = `${s.subscriptions.total} (${s.subscriptions.shared} shared)`
  $('retained').textContent = String(s.retained.count)
  $('rates').textContent = rates.map((r) => r.toFixed(1)).join(' / ')
  $('lag').textContent = s.eventLoopDelayMs.toFixed(1) + ' ms'
  $('memory').textContent = `${bytes(s.memory.heapUsed)} / ${bytes(s.memory.rss)}`
  push(messages, [t, ...rates])
  push(clients, [t, s.clients.connected])
  push(proc, [t, s.eventLoopDelayMs, s.memory.heapUsed / (1 << 20)])
  charts[0].setData(messages)
  charts[1].setData(clients)
  charts[2].setData(proc)
  if (s.clientChanges !== clientChanges) {
    clientChanges = s.clientChanges
    void loadClients()
  }
}

async function api(path, init) {
  const response = await fetch(path, init)
  if (!response.ok) throw new Error(`${path}: ${response.status}`)
  return response.json()
}

// Clients: the list is fetched again when a client connects or disconnects, and on search.
let selected
async function loadClients() {
  const q = $('search').value.trim()
  const { clients: list } = await api('api/v1/clients' + (q ? '?q=' + encodeURIComponent(q) : ''))
  $('clients-count').textContent = `(${list.length})`
  const rows = list.map((c) =>
    el('tr', { 'data-client': c.id, onclick: () => showClient(c.id) },
      el('td', {}, c.id), el('td', {}, c.username ?? ''), el('td', {}, c.remoteAddress ? `${c.remoteAddress}:${c.remotePort ?? ''}` : ''),
      el('td', {}, PROTOCOL[c.protocolVersion] ?? c.protocolVersion), el('td', {}, c.transport), el('td', {}, c.keepAlive + ' s'),
      el('td', {}, time(c.connectedAt)), el('td', {}, c.subscriptions), el('td', {}, c.inflight), el('td', {}, c.queued),
      el('td', {}, el('button', { className: 'kick', 'data-kick': c.id, onclick: (e) => { e.stopPropagation(); void kick(c.id) } }, 'Kick'))))
  $('client-rows').replaceChildren(...(rows.length > 0 ? rows : [el('tr', {}, el('td', { className: 'empty', colspan: '11' }, q ? 'No client matches.' : 'No client is connected.'))]))
  if (selected !== undefined) void showClient(selected)
}

async function showClient(id) {
  selected = id
  const box = $('client-detail')
  const response = await fetch('api/v1/clients/' + encodeURIComponent(id))
  if (!response.ok) {
    selected = undefined
    box.hidden = true
    return
  }
  const c = await response.json()
  const field = (name, value) => [el('dt', {}, name), el('dd', {}, value)]
  box.replaceChildren(
    el('h3', {}, c.id),
    el('dl', {}, ...field('User name', c.username ?? '–'), ...field('Protocol', PROTOCOL[c.protocolVersion] ?? c.protocolVersion),
      ...field('Clean session', c.cleanSession ? 'yes' : 'no'), ...field('Keep alive', c.keepAlive + ' s'),
      ...field('Connected since', time(c.connectedAt)), ...field('Address', c.remoteAddress ? `${c.remoteAddress}:${c.remotePort ?? ''}` : '–'),
      ...field('Transport', c.transport), ...field('Bridge', c.bridge ? 'yes' : 'no'),
      ...field('In flight / queued', `${c.inflight} / ${c.queued}`)),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Subscription'), el('th', {}, 'QoS'), el('th', {}, 'Options'))),
      el('tbody', {}, ...c.subscriptions.map((s) => el('tr', {}, el('td', {}, s.topicFilter), el('td', {}, s.qos),
        el('td', {}, [s.noLocal && 'no local', s.retainAsPublished && 'retain as published', s.retainHandling && `retain handling ${s.retainHandling}`].filter(Boolean).join(', ')))))),
  )
  box.hidden = false
}

async function kick(id) {
  await api('api/v1/clients/' + encodeURIComponent(id) + '/kick', { method: 'POST', headers: { 'X-Culex-Request': '1' } })
  if (selected === id) selected = undefined
  void loadClients()
}

async function loadBans() {
  const { bans } = await api('api/v1/bans')
  $('ban-rows').replaceChildren(...(bans.length > 0
    ? bans.map((b) => el('tr', {}, el('td', {}, b.clientId ?? ''), el('td', {}, b.username ?? ''), el('td', {}, b.address ?? ''), el('td', {}, b.until ? time(b.until) : 'never'), el('td', {}, b.reason ?? '')))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '5' }, 'No bans.'))]))
}

let searchTimer
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer)
  searchTimer = setTimeout(() => void loadClients(), 200)
})

const events = new EventSource('api/v1/events')
events.onmessage = (event) => onStats(JSON.parse(event.data))
events.onopen = () => {
  $('status').textContent = 'live'
  $('status').className = 'status live'
}
events.onerror = () => {
  $('status').textContent = 'reconnecting…'
  $('status').className = 'status'
}
void loadBans()
setInterval(() => void loadBans(), 10_000)
