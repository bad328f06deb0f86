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
let subscriptionCount = -1
let subscriptionsLoadedAt = 0
let subscriptionsTimer
// The list walks every session on the broker: fetched at most every 5 s, however often clients
// come, go and subscribe, and once more at the end of those 5 s for the last change.
function refreshSubscriptionsSoon() {
  if (subscriptionsTimer !== undefined) return
  subscriptionsTimer = setTimeout(() => {
    subscriptionsTimer = undefined
    subscriptionsLoadedAt = Date.now()
    void loadSubscriptions()
  }, Math.max(0, subscriptionsLoadedAt + 5000 - Date.now()))
}
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
    refreshSubscriptionsSoon()
  }
  if (s.subscriptions.total !== subscriptionCount) {
    subscriptionCount = s.subscriptions.total
    refreshSubscriptionsSoon()
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

// Subscriptions: fetched again on search, when clients come and go, and every 10 s.
async function loadSubscriptions() {
  const q = $('subscription-search').value.trim()
  const { total, filters } = await api('api/v1/subscriptions' + (q ? '?q=' + encodeURIComponent(q) : ''))
  $('subscriptions-count').textContent = total > filters.length ? `(${filters.length} of ${total})` : `(${total})`
  $('subscription-rows').replaceChildren(...(filters.length > 0
    ? filters.map((f) => el('tr', { 'data-filter': f.topicFilter }, el('td', {}, f.topicFilter), el('td', {}, f.subscribers),
      el('td', { className: 'ids' }, f.clientIds.join(', ') + (f.subscribers > f.clientIds.length ? ', …' : ''))))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '3' }, q ? 'No topic filter matches.' : 'No subscriptions.'))]))
}

// Retained messages: browsed by topic filter; Delete publishes an empty retained message.
async function loadRetained() {
  const filter = $('retained-filter').value.trim() || '#'
  const response = await fetch('api/v1/retained?filter=' + encodeURIComponent(filter))
  const body = await response.json()
  if (!response.ok) {
    $('retained-count').textContent = ''
    $('retained-rows').replaceChildren(el('tr', {}, el('td', { className: 'empty', colspan: '5' }, body.error ?? `error ${response.status}`)))
    return
  }
  const { total, messages: list } = body
  $('retained-count').textContent = total > list.length ? `(${list.length} of ${total})` : `(${total})`
  $('retained-rows').replaceChildren(...(list.length > 0
    ? list.map((m) => el('tr', { 'data-topic': m.topic }, el('td', {}, m.topic), el('td', {}, m.qos), el('td', {}, m.size + ' B'),
      el('td', { className: 'payload', title: m.encoding === 'base64' ? 'binary, shown as base64' : '' }, (m.encoding === 'base64' ? 'base64: ' : '') + m.payload + (m.truncated ? '…' : '')),
      // $SYS and other $ topics are the broker's own: not deleted from here.
      el('td', {}, m.topic.startsWith('$') ? '' : el('button', { className: 'kick', 'data-delete': m.topic, onclick: () => void deleteRetained(m.topic) }, 'Delete'))))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '5' }, 'No retained message matches.'))]))
}

async function deleteRetained(topic) {
  await api('api/v1/retained?topic=' + encodeURIComponent(topic), { method: 'DELETE', headers: { 'X-Culex-Request': '1' } })
  void loadRetained()
}

async function loadListeners() {
  const { listeners } = await api('api/v1/listeners')
  $('listener-rows').replaceChildren(...(listeners.length > 0
    ? listeners.map((l) => el('tr', {}, el('td', {}, l.transport), el('td', {}, l.address), el('td', {}, l.connections)))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '3' }, 'No listener is open.'))]))
}

async function loadBridges() {
  const { bridges } = await api('api/v1/bridges')
  $('bridge-rows').replaceChildren(...(bridges.length > 0
    ? bridges.map((b) => el('tr', { 'data-bridge': b.name }, el('td', {}, b.name), el('td', {}, b.url),
      el('td', {}, el('span', { className: b.connected ? 'up' : 'down' }, b.connected ? 'connected' : 'disconnected')), el('td', {}, b.inflight), el('td', {}, b.queued)))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '5' }, 'No bridges.'))]))
}

async function loadBans() {
  const { bans } = await api('api/v1/bans')
  $('ban-rows').replaceChildren(...(bans.length > 0
    ? bans.map((b) => el('tr', {}, el('td', {}, b.clientId ?? ''), el('td', {}, b.username ?? ''), el('td', {}, b.address ?? ''), el('td', {}, b.until ? time(b.until) : 'never'), el('td', {}, b.reason ?? '')))
    : [el('tr', {}, el('td', { className: 'empty', colspan: '5' }, 'No bans.'))]))
}


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
function debounced(input, load) {
  let timer
  $(input).addEventListener('input', () => {
    clearTimeout(timer)
    timer = setTimeout(() => void load(), 200)
  })
}
debounced('search', loadClients)
debounced('subscription-search', loadSubscriptions)
debounced('retained-filter', loadRetained)
$('retained-refresh').addEventListener('click', () => void loadRetained())

void loadRetained()
void loadListeners()
void loadBridges()
void loadBans()
// Retained messages are fetched on demand (filter, Delete), not polled: there may be millions.
setInterval(() => {
  void loadSubscriptions()
  void loadBans()
}, 10_000)
setInterval(() => {
  void loadListeners()
  void loadBridges()
}, 5_000)
