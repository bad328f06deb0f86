/**
 * The cluster's Lua scripts: node leases, session claims and hand-overs, adoption of a dead
 * node's sessions, and the route snapshot a node starts from. Each runs alone in Redis, which is
 * what makes "exactly one winner" hold (one adopter of a dead node, one owner of a client id).
 *
 * Keys, all under the store's hash tag `{p}` (ARGV[1]):
 * - `{p}:nodes` set of node ids that joined and were not adopted yet; `{p}:lease:<node>` the
 *   incarnation holding the node id, expiring unless renewed; `{p}:incarnation` a counter;
 * - `{p}:owner` hash client id → owner token `<node>#<incarnation>`; `{p}:owned:<node>` set of
 *   the client ids a node owns; `{p}:epoch` hash client id → claims so far; `{p}:claim` hash
 *   client id → `<token>|<epoch>` of a claim waiting for the owner to hand the session over;
 * - `{p}:routes` hash `<node>|<filter>` → 1, `{p}:rver` its version, `{p}:rlog` its change log;
 * - `{p}:inbox:<node>` messages to a node, `{p}:ctl:<node>` control messages to it (`k`: hand
 *   a client over, `r`: a client was handed to you, `l`: your claim lost to a newer one),
 *   `{p}:adopted:<dead node>:<adopter token>` the inbox of a dead node, moved aside when adopted,
 *   `{p}:drain:<node>` those a node still has to empty (their key after `{p}:`).
 * Internal.
 */

/** Splits an owner token into its node id. */
const NODE_OF = `local function nodeOf(token) return string.match(token, '^(.*)#[^#]*$') end`

/**
 * Route changes, logged as one entry per version so a reader never sees half of them.
 * `changes` holds `1<node>|<filter>` (added) or `0<node>|<filter>` (removed).
 */
const LOG_ROUTES = `
local function logRoutes(P, changes)
  if #changes == 0 then return redis.call('GET', P .. ':rver') or '0' end
  local ver = redis.call('INCR', P .. ':rver')
  redis.call('XADD', P .. ':rlog', 'MAXLEN', '~', '100000', '*', 'v', tostring(ver), 'c', table.concat(changes, '\\0'))
  return tostring(ver)
end`

/**
 * Takes the node id for an incarnation. ARGV: P, node, incarnation, lease ms.
 * Returns 1, or, when an incarnation holds it, `{holder, ms left}` read in the same step (read
 * after a failed SET in a second round trip, the lease could have expired in between).
 */
export const JOIN = `
local P, node, inc, ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ':lease:' .. node
if redis.call('SET', key, inc, 'NX', 'PX', ms) == false then return {redis.call('GET', key), redis.call('PTTL', key)} end
redis.call('SADD', P .. ':nodes', node)
return 1
`

/** Renews a lease. ARGV: P, node, incarnation, lease ms. Returns 1, or 0 when the lease is no longer this incarnation's. */
export const RENEW = `
local P, node, inc, ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = P .. ':lease:' .. node
if redis.call('GET', key) ~= inc then return 0 end
redis.call('PEXPIRE', key, ms)
return 1
`

/** Gives up a lease (clean shutdown): the node's sessions stay owned by its id. ARGV: P, node, incarnation. */
export const LEAVE = `
local P, node, inc = ARGV[1], ARGV[2], ARGV[3]
local key = P .. ':lease:' .. node
if redis.call('GET', key) == inc then redis.call('DEL', key) end
return 1
`

/**
 * A connection with client id C arrived at node N: N claims C. ARGV: P, C, N, N's token.
 * Returns:
 * - { 'OWN', epoch }: N owns C now (C was nobody's, or already N's);
 * - { 'DEAD', epoch, node }: C's owner is a node whose lease expired, with C's session: adopt it
 *   first, then claim again; { 'BUSY', epoch, node }: the owner node is back with a new
 *   incarnation and has not taken its sessions back yet: claim again shortly;
 * - { 'NOLEASE', 0 }: the caller's own lease is gone;
 * - { 'WAIT', epoch, node, route version, filter... }: C's owner is a live node; N now has routes
 *   for C's stored subscriptions (returned), in force once every node has seen the version
 *   returned; then N asks the owner to hand C over (`KICK`).
 * A claim by another node still waiting is superseded (that node's control stream gets 'l').
 */
export const CLAIM = `
${NODE_OF}
${LOG_ROUTES}
local P, c, node, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if node .. '#' .. (redis.call('GET', P .. ':lease:' .. node) or '') ~= token then return { 'NOLEASE', 0 } end
local epoch = redis.call('HINCRBY', P .. ':epoch', c, 1)
local pending = redis.call('HGET', P .. ':claim', c)
if pending then
  local ptoken, pepoch = string.match(pending, '^(.*)|(%d+)$')
  redis.call('HDEL', P .. ':claim', c)
  if ptoken ~= token then redis.call('XADD', P .. ':ctl:' .. nodeOf(ptoken), '*', 'l', c, 'e', pepoch) end
end
local cur = redis.call('HGET', P .. ':owner', c)
if not cur or cur == token then
  redis.call('HSET', P .. ':owner', c, token)
  redis.call('SADD', P .. ':owned:' .. node, c)
  return { 'OWN', epoch }
end
local owner = nodeOf(cur)
local inc = redis.call('GET', P .. ':lease:' .. owner)
if not inc or owner .. '#' .. inc ~= cur then
  -- The owner incarnation is gone. Its stored session, if it has one, is taken by whoever
  -- adopts its node (a dead node still in the nodes set), or by the node itself back at start; with
  -- none (the session ended there), C is free.
  if redis.call('SISMEMBER', P .. ':owned:' .. owner, c) == 1 and (inc or redis.call('SISMEMBER', P .. ':nodes', owner) == 1) then
    if inc then return { 'BUSY', epoch, owner } end
    return { 'DEAD', epoch, owner }
  end
  redis.call('HSET', P .. ':owner', c, token)
  redis.call('SADD', P .. ':owned:' .. node, c)
  return { 'OWN', epoch }
end
redis.call('HSET', P .. ':claim', c, token .. '|' .. epoch)
local filters = redis.call('HKEYS', P .. ':subs:' .. c)
local changes = {}
for _, f in ipairs(filters) do
  if redis.call('HSETNX', P .. ':routes', node .. '|' .. f, '1') == 1 then changes[#changes + 1] = '1' .. node .. '|' .. f end
end
local ver = logRoutes(P, changes)
local out = { 'WAIT', epoch, owner, ver }
for _, f in ipairs(filters) do out[#out + 1] = f end
return out
`

/**
 * Asks C's owner to hand C over to the claim of `epoch` (if it still waits): its control stream
 * gets 'k' with the last id of its inbox, which it handles before handing over. Sent once every
 * node has seen the claimant's routes, so that every message routed to the owner alone is in
 * its inbox by then. ARGV: P, C, owner node, claimant token, epoch. Returns 1, or 0 when the claim
 * no longer waits.
 */
export const KICK = `
local P, c, owner, token, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', P .. ':claim', c) ~= token .. '|' .. epoch then return 0 end
local last = redis.call('XREVRANGE', P .. ':inbox:' .. owner, '+', '-', 'COUNT', 1)
local upto = last[1] and last[1][1] or '0-0'
redis.call('XADD', P .. ':ctl:' .. owner, '*', 'k', c, 'e', epoch, 'u', upto)
return 1
`

/**
 * The owner hands C to the claim of `epoch` (after committing everything it did with C), if that
 * claim still waits: a newer claim sends a request of its own, with its own inbox position.
 * ARGV: P, C, the owner's token, epoch. Returns 1 when handed over, 0 when that claim no longer
 * waits or C is no longer this owner's.
 */
export const RELEASE = `
${NODE_OF}
local P, c, token, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if nodeOf(token) .. '#' .. (redis.call('GET', P .. ':lease:' .. nodeOf(token)) or '') ~= token then return 0 end
local cur = redis.call('HGET', P .. ':owner', c)
if cur and cur ~= token then return 0 end
local pending = redis.call('HGET', P .. ':claim', c)
if not pending then return 0 end
local ptoken, pepoch = string.match(pending, '^(.*)|(%d+)$')
if pepoch ~= epoch then return 0 end
redis.call('HDEL', P .. ':claim', c)
redis.call('HSET', P .. ':owner', c, ptoken)
redis.call('SREM', P .. ':owned:' .. nodeOf(token), c)
redis.call('SADD', P .. ':owned:' .. nodeOf(ptoken), c)
redis.call('XADD', P .. ':ctl:' .. nodeOf(ptoken), '*', 'r', c, 'e', pepoch)
return 1
`

/**
 * Node N (token T) adopts everything of node D, whose lease expired (or, D = N, of its own
 * earlier incarnation, at start). Exactly one node wins: D leaves `{p}:nodes` here.
 * ARGV: P, D, N, T. Returns { 'ALIVE' } (D's lease is live), { 'GONE' } (adopted already), or
 * { 'OK', route version, aside key (after `{p}:`; '' for itself), n, client ids (n of them)...,
 * filters N now has routes for... }.
 */
export const ADOPT = `
${LOG_ROUTES}
local P, dead, node, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local clients = redis.call('SMEMBERS', P .. ':owned:' .. dead)
local filters = {}
local aside = ''
local ver = redis.call('GET', P .. ':rver') or '0'
if dead ~= node then
  if redis.call('EXISTS', P .. ':lease:' .. dead) == 1 then return { 'ALIVE' } end
  if redis.call('SREM', P .. ':nodes', dead) == 0 then return { 'GONE' } end
  local changes = {}
  local routes = redis.call('HKEYS', P .. ':routes')
  local prefix = dead .. '|'
  for _, field in ipairs(routes) do
    if string.sub(field, 1, #prefix) == prefix then
      local f = string.sub(field, #prefix + 1)
      redis.call('HDEL', P .. ':routes', field)
      changes[#changes + 1] = '0' .. field
      if redis.call('HSETNX', P .. ':routes', node .. '|' .. f, '1') == 1 then changes[#changes + 1] = '1' .. node .. '|' .. f end
      filters[#filters + 1] = f
    end
  end
  ver = logRoutes(P, changes)
  redis.call('DEL', P .. ':owned:' .. dead)
  -- The dead node's inbox moves aside: a late write of its incarnation cannot touch it, and the
  -- node, back with a new incarnation, starts with an inbox of its own.
  aside = 'adopted:' .. dead .. ':' .. token .. ':' .. redis.call('INCR', P .. ':asides')
  if redis.call('EXISTS', P .. ':inbox:' .. dead) == 1 then
    redis.call('RENAME', P .. ':inbox:' .. dead, P .. ':' .. aside)
    redis.call('SADD', P .. ':drain:' .. node, aside)
  end
  for _, d in ipairs(redis.call('SMEMBERS', P .. ':drain:' .. dead)) do redis.call('SADD', P .. ':drain:' .. node, d) end
  redis.call('DEL', P .. ':drain:' .. dead, P .. ':lease:' .. dead, P .. ':ctl:' .. dead)
  redis.call('HDEL', P .. ':seen', dead)
else
  if node .. '#' .. (redis.call('GET', P .. ':lease:' .. node) or '') ~= token then return { 'ALIVE' } end
  local prefix = node .. '|'
  for _, field in ipairs(redis.call('HKEYS', P .. ':routes')) do
    if string.sub(field, 1, #prefix) == prefix then filters[#filters + 1] = string.sub(field, #prefix + 1) end
  end
end
for _, c in ipairs(clients) do
  redis.call('HSET', P .. ':owner', c, token)
  redis.call('SADD', P .. ':owned:' .. node, c)
end
local out = { 'OK', ver, aside, #clients }
for _, c in ipairs(clients) do out[#out + 1] = c end
for _, f in ipairs(filters) do out[#out + 1] = f end
return out
`

/**
 * The routes as a node starts from them, read at one instant: their version, the last id of
 * their log (to tail from), every route. ARGV: P.
 */
export const SNAPSHOT = `
local P = ARGV[1]
local e = redis.call('XREVRANGE', P .. ':rlog', '+', '-', 'COUNT', 1)
return { redis.call('GET', P .. ':rver') or '0', e[1] and e[1][1] or '0-0', redis.call('HKEYS', P .. ':routes') }
`

/**
 * The other live nodes that have not yet recorded (in `{p}:seen`) route version `version` or a
 * later one. ARGV: P, this node, version.
 */
export const ACKED = `
local P, self, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if n ~= self and (tonumber(redis.call('HGET', P .. ':seen', n) or '0') or 0) < version and redis.call('EXISTS', P .. ':lease:' .. n) == 1 then
    out[#out + 1] = n
  end
end
return out
`

/**
 * After every node has seen an adoption's routes: what they sent the dead node meanwhile (a new
 * `inbox:<dead>`) joins the adopter's drains, unless the dead node is back (then it is its own).
 * ARGV: P, dead node, adopter node, aside key. Returns the key to drain, or ''.
 */
export const ADOPT_LATE = `
local P, dead, node, aside = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', P .. ':nodes', dead) == 1 or redis.call('EXISTS', P .. ':inbox:' .. dead) == 0 then return '' end
local late = aside .. ':late'
redis.call('RENAME', P .. ':inbox:' .. dead, P .. ':' .. late)
redis.call('SADD', P .. ':drain:' .. node, late)
return late
`
