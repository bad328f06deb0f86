/**
 * The Lua scripts of the Redis adapter. One `COMMIT` call applies one batch: Redis runs a script
 * alone, so no other client sees half a batch, and the AOF records its effects as one MULTI/EXEC
 * block, which a restart after a crash applies whole or not at all.
 *
 * Redis does NOT undo the writes a script made before a runtime error. So the script writes
 * nothing until it knows everything will succeed, in three passes:
 * 1. decode and check the batch (op codes, arities, numbers, and the type of the keys it will
 *    write without reading them first);
 * 2. read what the batch depends on (in bulk: one HMGET per key, not one command per operation)
 *    and apply every operation, in order, to Lua tables; any error here (a key of the wrong type
 *    among those it reads) stops the script before its first write;
 * 3. write the net result, a few multi-field commands per key, with arguments checked in 1 and
 *    keys of the right type, so none can fail. (Redis checks out-of-memory, disk and replica
 *    conditions at a script's first write only, never between its writes.)
 * Applying to tables first is also what makes it fast: Redis charges a few microseconds per
 * `redis.call`, more than the script's own work, so a batch costs a constant number of calls per
 * key it touches rather than several per operation.
 *
 * The semantics are those of `MemoryPersistence`, operation by operation: operations on a client
 * with no session are ignored (so no orphan keys are ever written); an `enqueue` of an existing
 * `seq`, or of a message not stored, is ignored; a message whose last delivery goes is deleted at
 * the end of the batch, unless a later operation of the batch took it over; `unretain` with
 * `receivedAt` deletes only the retained message received at that time (compare-and-delete,
 * inside the script).
 *
 * Reference counts: a stored message has one reference unless it is in `orphans` (none) or
 * `mref` has a field for it (1 + that many), so the common case, a message stored and queued for
 * one session, writes no count at all.
 *
 * Internal: the key layout is documented in `../redis.ts`.
 */

/**
 * Fields per op code, after the code itself: `encodeBatch` in `codec.ts` writes them, the script
 * reads them (its table is made from this one).
 */
export const ARITY = { C: 2, U: 2, X: 1, S: 3, N: 2, M: 2, E: 4, T: 3, R: 2, D: 2, Q: 2, L: 2, W: 2, K: 2, k: 2, F: 2, G: 2, I: 1, J: 2, Z: 1 } as const

/** An op code of the batch format. */
export type OpCode = keyof typeof ARITY

const LUA_ARITY = `{ ${Object.entries(ARITY)
  .map(([code, fields]) => `${code} = ${fields}`)
  .join(', ')} }`

/**
 * KEYS: 1 sessions, 2 msg, 3 mref, 4 retained, 5 wills, 6 msgid, 7 orphans.
 * ARGV: 1 the prefix of per-session keys ('{culex}'), 2 the batch as `encodeBatch` lays it out,
 * 3 (cluster mode only, else absent or empty) `<owner token>\n<node id>`.
 * Returns the number of operations; in cluster mode `{ operations, route version after }`.
 *
 * Cluster mode (see `src/cluster/`): ops on a client whose owner (`{p}:owner`) is not this node's
 * token are dropped (a late write of an old owner is fenced off); `F` forwards messages to a
 * node's inbox stream, `G` adds or removes this node's interest in a topic filter (`{p}:routes`,
 * logged in `{p}:rlog` under a new `{p}:rver`), `I` deletes a handled entry of this node's inbox,
 * `J` one of a dead node's inbox it adopted, `Z` deletes that inbox once drained; retained changes are logged in
 * `{p}:retlog` for the other nodes' in-memory indexes; created and deleted sessions join and
 * leave this node's `{p}:owned:<node>` set.
 */
export const COMMIT = `
local P, BATCH = ARGV[1], ARGV[2]
local SESSIONS, MSG, MREF, RETAINED, WILLS, MSGID, ORPHANS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local call, match = redis.call, string.match
local ARITY = ${LUA_ARITY}
local FORMAT = {}
for a = 1, 4 do FORMAT[a] = '<' .. string.rep('I4c0', a) end
-- The per-session keys ops write without reading them first, and the type they must have (pass 2
-- reads the delivery hashes before pass 3 writes them, so a wrong type shows there).
local TOUCHES = { S = ':subs:', N = ':subs:', Q = ':q2:', L = ':q2:' }
local TYPE_OF = { [':subs:'] = 'hash', [':q2:'] = 'set' }
-- Ops naming a delivery by its seq.
local SEQ_OPS = { E = true, T = true, R = true, D = true }
-- Arguments per command when writing in bulk (even: field/value pairs are never split; far
-- below the 8000 values Lua's unpack can return).
local CHUNK = 1000
-- A delivery value's message id.
local MID = '^%a%d*|(%d+)|'
-- Ops that name no client (the fence lets them through).
local NOCLIENT = { M = true, K = true, k = true, F = true, G = true, I = true, J = true, Z = true }
-- Cluster mode: this node's owner token and id.
local TOKEN, NODE
if ARGV[3] and ARGV[3] ~= '' then
  TOKEN, NODE = match(ARGV[3], '^([^\\n]*)\\n(.*)$')
  if not TOKEN then return redis.error_reply('CULEX bad cluster header; the batch was not applied') end
end

local function refuse(why) return redis.error_reply('CULEX ' .. why .. '; the batch was not applied') end

-- Pass 1: decode and check. ------------------------------------------------------------------
local bad
local function want(key, t)
  local got = call('TYPE', key)['ok']
  if got ~= 'none' and got ~= t then bad = 'key ' .. key .. ' holds a ' .. got .. ', not a ' .. t end
end
want(SESSIONS, 'hash') want(MSG, 'hash') want(MREF, 'hash') want(RETAINED, 'hash') want(WILLS, 'hash')
want(MSGID, 'string') want(ORPHANS, 'set')
if bad then return refuse(bad) end
local codes, fields = {}, {}
local clients, seen = {}, {}   -- clients the batch names, each once
local seqs = {}                -- client -> the seqs its E/T/R/D ops name
local checked = {}
local pos, size = 1, #BATCH
while pos <= size do
  local code = string.sub(BATCH, pos, pos)
  local a = ARITY[code]
  if a == nil then return refuse('unknown op code at byte ' .. pos) end
  local ok, r1, r2, r3, r4, r5 = pcall(struct.unpack, FORMAT[a], BATCH, pos + 1)
  if not ok then return refuse('truncated batch') end
  local f = { r1, r2, r3, r4, r5 }
  pos = f[a + 1]
  f[a + 1] = nil
  if code == 'M' and not match(f[1], '^%d+$') then bad = 'message id ' .. f[1] end
  if code == 'E' and not match(f[3], '^%d+$') then bad = 'message id ' .. f[3] end
  if code == 'T' and not match(f[3], '^%d+$') then bad = 'packet id ' .. f[3] end
  if code == 'U' or code == 'C' then
    if not match(f[2], '^[%d.e+-]+|[%d.e+-]*$') then bad = 'session value ' .. f[2] end
  end
  local kind = TOUCHES[code]
  if kind then
    local key = P .. kind .. f[1]
    if not checked[key] then checked[key] = true want(key, TYPE_OF[kind]) end
  end
  if bad then return refuse(bad) end
  if not NOCLIENT[code] then
    local c = f[1]
    if not seen[c] then seen[c] = true clients[#clients + 1] = c end
    if SEQ_OPS[code] then
      local list = seqs[c]
      if not list then list = {} seqs[c] = list end
      list[#list + 1] = f[2]
    end
  end
  codes[#codes + 1] = code
  fields[#fields + 1] = f
end

-- Cluster: the fence. A node incarnation whose lease is gone writes nothing at all (the other
-- nodes may have adopted its sessions and routes); ops on clients it does not own are dropped (a
-- late write of an old owner).
if TOKEN then
  if NODE .. '#' .. (call('GET', P .. ':lease:' .. NODE) or '') ~= TOKEN then
    return redis.error_reply('CULEX the lease of ' .. TOKEN .. ' is gone; the batch was not applied')
  end
  if #clients > 0 then
    local fenced, any = {}, false
    for i = 1, #clients, CHUNK do
      local j = math.min(i + CHUNK - 1, #clients)
      local owners = call('HMGET', P .. ':owner', unpack(clients, i, j))
      for k = i, j do
        if owners[k - i + 1] ~= TOKEN then fenced[clients[k]] = true any = true end
      end
    end
    if any then
      local c2, f2, cl2 = {}, {}, {}
      for n = 1, #codes do
        if NOCLIENT[codes[n]] or not fenced[fields[n][1]] then c2[#c2 + 1] = codes[n] f2[#f2 + 1] = fields[n] end
      end
      for _, c in ipairs(clients) do if not fenced[c] then cl2[#cl2 + 1] = c end end
      codes, fields, clients = c2, f2, cl2
      for c in pairs(fenced) do seqs[c] = nil end
    end
  end
end

-- Pass 2: read what the batch depends on, apply it to tables. No writes. --------------------
-- Every read goes through read(): an error (a key of the wrong type) stops the script here,
-- before any write, naming the key.
local function read(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then error('key ' .. key .. ': ' .. reply.err, 0) end
  return reply
end
local function hmget(key, names)
  local out = {}
  for i = 1, #names, CHUNK do
    local j = math.min(i + CHUNK - 1, #names)
    local values = read('HMGET', key, unpack(names, i, j))
    for k = i, j do out[names[k]] = values[k - i + 1] or false end
  end
  return out
end

local lastId   -- the highest message id stored before this batch
local sess     -- client -> its session value, false: none (every client the batch names)
local sessDirty = {}
local function exists(c) return sess[c] and true or false end

-- Deliveries, per client: v = seq -> value (false: none), dirty = seqs changed; wiped: the whole
-- hash goes (sessionCreate/Delete), and only what v holds afterwards is written back.
local D = {}
local function deliveries(c)
  local s = D[c]
  if not s then s = { wiped = false, v = {}, dirty = {} } D[c] = s end
  return s
end
local function delivery(s, c, seq)
  local x = s.v[seq]
  if x == nil then
    x = (not s.wiped and read('HGET', P .. ':d:' .. c, seq)) or false
    s.v[seq] = x
  end
  return x
end
local function setDelivery(s, seq, value) s.v[seq] = value s.dirty[seq] = true end

-- Messages: id -> { on = stored now, blob = value to write, refs = references now, released =
-- a delivery let go of it, stored0/refs0 = as found }.
local M = {}
-- Messages that stored deliveries refer to: stored, and counted by mref (read in one HMGET).
local function referencedAll(ids)
  local need = {}
  for _, id in ipairs(ids) do if M[id] == nil then need[#need + 1] = id end end
  local extra = hmget(MREF, need)
  for _, id in ipairs(need) do
    if M[id] == nil then
      local r = 1 + (tonumber(extra[id]) or 0)
      M[id] = { on = true, refs = r, stored0 = true, refs0 = r }
    end
  end
end
local function referenced(id)
  if M[id] == nil then referencedAll({ id }) end
  return M[id]
end
-- Any message id: above the highest id ever stored it cannot be stored (the common case: the
-- batch's own new messages cost no read).
local function message(id)
  local m = M[id]
  if m == nil then
    if tonumber(id) > lastId or read('HEXISTS', MSG, id) == 0 then
      m = { on = false, refs = 0, stored0 = false, refs0 = 0 }
    else
      local r = 0
      if read('SISMEMBER', ORPHANS, id) == 0 then r = 1 + (tonumber(read('HGET', MREF, id)) or 0) end
      m = { on = true, refs = r, stored0 = true, refs0 = r }
    end
    M[id] = m
  end
  return m
end
-- A delivery let go of its message. A message with no delivery left goes at the end of the batch,
-- not now: a later operation of the batch may take it over (a shared subscription handing it on).
local function release(id)
  if not id then return end
  local m = referenced(id)
  m.refs = m.refs - 1
  if m.refs <= 0 then m.refs = 0 m.released = true end
end
-- Subscriptions and incoming QoS 2 ids, per client: v = name -> value (false: delete).
local SUB, Q2 = {}, {}
local function bag(t, c)
  local s = t[c]
  if not s then s = { wiped = false, v = {} } t[c] = s end
  return s
end
local WILL = {}   -- client -> will value, false: delete
local RET = {}    -- topic -> retained value, false: delete

local function wipe(c)
  local s = deliveries(c)
  if not s.wiped then
    local all = read('HGETALL', P .. ':d:' .. c)
    for i = 1, #all, 2 do if s.v[all[i]] == nil then s.v[all[i]] = all[i + 1] end end
  end
  local ids = {}
  for _, v in pairs(s.v) do if v then ids[#ids + 1] = match(v, MID) end end
  referencedAll(ids)
  for _, id in ipairs(ids) do release(id) end
  s.wiped = true s.v = {} s.dirty = {}
  local b = bag(SUB, c) b.wiped = true b.v = {}
  b = bag(Q2, c) b.wiped = true b.v = {}
  WILL[c] = false
end

local maxId, maxIdText

local function simulate()
  lastId = tonumber(read('GET', MSGID) or '0') or 0
  sess = hmget(SESSIONS, clients)
  -- The deliveries the batch names, one HMGET per session; then the messages of those it
  -- dequeues, one HMGET of their counts.
  for c, list in pairs(seqs) do D[c] = { wiped = false, v = hmget(P .. ':d:' .. c, list), dirty = {} } end
  local ids = {}
  for n = 1, #codes do
    if codes[n] == 'D' then
      local v = D[fields[n][1]].v[fields[n][2]]
      if v then ids[#ids + 1] = match(v, MID) end
    end
  end
  referencedAll(ids)
  maxId = lastId
  for n = 1, #codes do
    local code, f = codes[n], fields[n]
    local c = f[1]
    if code == 'M' then
      local m = message(c)
      if not m.on then m.on = true m.blob = f[2] m.refs = 0 end
      local num = tonumber(c)
      if num > maxId then maxId, maxIdText = num, c end
    elseif code == 'E' then
      if exists(c) then
        local m = message(f[3])
        if m.on then
          local s = deliveries(c)
          if not delivery(s, c, f[2]) then
            setDelivery(s, f[2], f[4])
            m.refs = m.refs + 1
          end
        end
      end
    elseif code == 'T' then
      local s = deliveries(c)
      local v = delivery(s, c, f[2])
      if v then
        local st, rest = match(v, '^(%a)%d*(|.*)$')
        if st then
          if st == 'q' then st = 's' end
          setDelivery(s, f[2], st .. f[3] .. rest)
        end
      end
    elseif code == 'R' then
      local s = deliveries(c)
      local v = delivery(s, c, f[2])
      if v then
        local pid, rest = match(v, '^%a(%d+)(|.*)$')
        if pid then setDelivery(s, f[2], 'r' .. pid .. rest) end
      end
    elseif code == 'D' then
      local s = deliveries(c)
      local v = delivery(s, c, f[2])
      if v then
        setDelivery(s, f[2], false)
        release(match(v, MID))
      end
    elseif code == 'C' then
      wipe(c)
      sess[c] = f[2] sessDirty[c] = true
    elseif code == 'U' then
      if exists(c) then sess[c] = f[2] sessDirty[c] = true end
    elseif code == 'X' then
      wipe(c)
      sess[c] = false sessDirty[c] = true
    elseif code == 'S' then
      if exists(c) then bag(SUB, c).v[f[2]] = f[3] end
    elseif code == 'N' then
      bag(SUB, c).v[f[2]] = false
    elseif code == 'Q' then
      if exists(c) then bag(Q2, c).v[f[2]] = true end
    elseif code == 'L' then
      bag(Q2, c).v[f[2]] = false
    elseif code == 'W' then
      if exists(c) then WILL[c] = f[2] ~= '' and f[2] end
    elseif code == 'K' then
      RET[c] = f[2]
    elseif code == 'k' then
      if f[2] == '' then
        RET[c] = false
      else
        local cur = RET[c]
        if cur == nil then cur = read('HGET', RETAINED, c) or false end
        if cur and match(cur, '^[^|]*|([^|]*)|') == f[2] then RET[c] = false end
      end
    end
  end
end
local simulated, failure = pcall(simulate)
if not simulated then return refuse(tostring(failure)) end

-- Pass 3: write the net result. -------------------------------------------------------------
local function bulk(command, key, list)
  for i = 1, #list, CHUNK do call(command, key, unpack(list, i, math.min(i + CHUNK - 1, #list))) end
end
local gone = {}   -- per-session keys of wiped sessions: deleted first, then written afresh
for c, s in pairs(D) do if s.wiped then gone[#gone + 1] = P .. ':d:' .. c end end
for c, s in pairs(SUB) do if s.wiped then gone[#gone + 1] = P .. ':subs:' .. c end end
for c, s in pairs(Q2) do if s.wiped then gone[#gone + 1] = P .. ':q2:' .. c end end
for i = 1, #gone, CHUNK do call('DEL', unpack(gone, i, math.min(i + CHUNK - 1, #gone))) end

local set, del = {}, {}
for c in pairs(sessDirty) do
  if sess[c] then set[#set + 1] = c set[#set + 1] = sess[c] else del[#del + 1] = c end
end
bulk('HSET', SESSIONS, set) bulk('HDEL', SESSIONS, del)

for c, s in pairs(D) do
  set, del = {}, {}
  for seq in pairs(s.dirty) do
    local v = s.v[seq]
    if v then set[#set + 1] = seq set[#set + 1] = v elseif not s.wiped then del[#del + 1] = seq end
  end
  local key = P .. ':d:' .. c
  bulk('HSET', key, set) bulk('HDEL', key, del)
end
for c, s in pairs(SUB) do
  set, del = {}, {}
  for name, v in pairs(s.v) do
    if v then set[#set + 1] = name set[#set + 1] = v elseif not s.wiped then del[#del + 1] = name end
  end
  local key = P .. ':subs:' .. c
  bulk('HSET', key, set) bulk('HDEL', key, del)
end
for c, s in pairs(Q2) do
  set, del = {}, {}
  for name, v in pairs(s.v) do
    if v then set[#set + 1] = name elseif not s.wiped then del[#del + 1] = name end
  end
  local key = P .. ':q2:' .. c
  bulk('SADD', key, set) bulk('SREM', key, del)
end
set, del = {}, {}
for c, v in pairs(WILL) do if v then set[#set + 1] = c set[#set + 1] = v else del[#del + 1] = c end end
bulk('HSET', WILLS, set) bulk('HDEL', WILLS, del)
set, del = {}, {}
for t, v in pairs(RET) do if v then set[#set + 1] = t set[#set + 1] = v else del[#del + 1] = t end end
bulk('HSET', RETAINED, set) bulk('HDEL', RETAINED, del)

local mset, mdel, rset, rdel, oadd, orem = {}, {}, {}, {}, {}, {}
for id, m in pairs(M) do
  if m.released and m.refs == 0 then m.on = false end
  if m.on and m.blob then mset[#mset + 1] = id mset[#mset + 1] = m.blob
  elseif not m.on and m.stored0 then mdel[#mdel + 1] = id end
  -- The count as found and as it must be: orphans holds the unreferenced, mref the extra references.
  local orphan0, orphan1 = m.stored0 and m.refs0 == 0, m.on and m.refs == 0
  local extra0 = (m.stored0 and m.refs0 > 1) and m.refs0 - 1 or 0
  local extra1 = (m.on and m.refs > 1) and m.refs - 1 or 0
  if orphan1 ~= orphan0 then
    if orphan1 then oadd[#oadd + 1] = id else orem[#orem + 1] = id end
  end
  if extra1 ~= extra0 then
    if extra1 > 0 then rset[#rset + 1] = id rset[#rset + 1] = extra1 else rdel[#rdel + 1] = id end
  end
end
bulk('HSET', MSG, mset) bulk('HDEL', MSG, mdel)
bulk('HSET', MREF, rset) bulk('HDEL', MREF, rdel)
bulk('SADD', ORPHANS, oadd) bulk('SREM', ORPHANS, orem)
if maxIdText then call('SET', MSGID, maxIdText) end
if not TOKEN then return #codes end

-- Cluster: the bus and the routes. ---------------------------------------------------------
local ver = call('GET', P .. ':rver') or '0'
local changes = {}
local owned = P .. ':owned:' .. NODE
for n = 1, #codes do
  local code, f = codes[n], fields[n]
  if code == 'F' then
    call('XADD', P .. ':inbox:' .. f[1], '*', 'm', f[2])
  elseif code == 'G' then
    local field = NODE .. '|' .. f[1]
    if f[2] == '1' then call('HSET', P .. ':routes', field, '1') else call('HDEL', P .. ':routes', field) end
    changes[#changes + 1] = (f[2] == '1' and '1' or '0') .. field
  elseif code == 'I' then
    call('XDEL', P .. ':inbox:' .. NODE, f[1])
  elseif code == 'J' then
    call('XDEL', P .. ':' .. f[1], f[2])
  elseif code == 'Z' then
    call('DEL', P .. ':' .. f[1])
    call('SREM', P .. ':drain:' .. NODE, f[1])
  elseif code == 'C' then
    -- A session replaced here keeps its owner: the owner entry stays this node's (a deletion
    -- leaves it too, so that a claim elsewhere asks this node, which hands over at once).
    call('HSET', P .. ':owner', f[1], TOKEN)
    call('SADD', owned, f[1])
  elseif code == 'X' then
    call('SREM', owned, f[1])
  end
end
if #changes > 0 then
  ver = tostring(call('INCR', P .. ':rver'))
  call('XADD', P .. ':rlog', 'MAXLEN', '~', '100000', '*', 'v', ver, 'c', table.concat(changes, '\\0'))
end
local topics = {}
for t in pairs(RET) do topics[#topics + 1] = t end
if #topics > 0 then call('XADD', P .. ':retlog', 'MAXLEN', '~', '100000', '*', 'n', NODE, 't', table.concat(topics, '\\0')) end
return { #codes, ver }
`

/**
 * Forgets the messages no delivery took (the orphans list), run by open() before the broker
 * starts committing (none can be queued any more: the broker numbers new messages above
 * `lastMessageId`). KEYS: 1 msg, 2 mref, 3 orphans. Returns how many it deleted.
 */
export const FORGET_ORPHANS = `
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  n = n + redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
redis.call('DEL', KEYS[3])
return n
`
