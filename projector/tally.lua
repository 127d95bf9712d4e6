#!lua name=tally
--[[
The read model's apply function, loaded with FUNCTION LOAD REPLACE by the projector.

FCALL tally_apply 1 {t:<tenant>}:gen <now_ms> <n> <F> <event 1: F fields> ... <event n>

Applies n events of ONE tenant in one atomic step. Every key it touches carries the tenant's
hash tag {t:<tenant>}, so the call lives in one cluster slot; KEYS[1] names the tag (and holds
the tenant's current generation, "1" when unset). For each event, in order:
  - a complaint event (type 1..3) whose complaint is parked (see the projector) is not applied:
    PARKED, and the projector parks it too, keeping the complaint's order;
  - version <= the complaint's last applied version: a duplicate, skipped (DUP);
  - version > last + 1: a gap, refused (GAP): the projector retries it later;
  - otherwise every view changes and the version is recorded (APPLIED).
Reference events (types 10..12) are ordered by seq instead of version.
Redis calls are what cost here, so they are batched: the complaints' versions are read with
one HMGET and written with one HSET, a parked complaint is only looked up when the tenant has
any, and the counter increments of the whole batch are summed and written per key with one
HMGET and one HSET (the call is atomic, so the read-modify-write is safe).
Returns one integer per event: 0 APPLIED, 1 DUP, 2 GAP, 3 PARKED, 4 INVALID.

A Redis function does not roll back on an error: writes made before it stay. So nothing is
written before everything that could fail was checked: every event's fields are checked first
(an event that fails is INVALID and writes nothing; the projector parks it); the loop only
reads and records what to write (ops, sums); then the type of every key to be written is
checked; only then are the writes made. A key of the wrong type (written by something else)
fails the call with nothing written, and its events are retried alone, then parked.

The keyspace (P = {t:<tenant>}:<gen>:) is documented in docs/keyspace.md.
Fields of an event, in order (F = 19; "" or 0 where a type has none):
  seq complaint version type occurred_ms local_day recorded_ms category priority agent
  prev_agent from_status to_status created_ms resolution_s bucket name ref_id time_zone
For a creation, to_status is its status and created_ms its time; for an assignment, agent is
the new assignee and to_status the current status. Reference events carry ref_id (the
category or agent id, "" for the tenant), name, and for the tenant its time_zone.
]]

local F_SEQ, F_ID, F_VERSION, F_TYPE, F_OCCURRED, F_DAY, F_RECORDED = 1, 2, 3, 4, 5, 6, 7
local F_CAT, F_PRIO, F_AGENT, F_PREV, F_FROM, F_TO = 8, 9, 10, 11, 12, 13
local F_CREATED, F_SECS, F_BUCKET, F_NAME, F_REF, F_TZ = 14, 15, 16, 17, 18, 19
local NFIELDS = 19 -- STREAM_APPLY_NFIELDS in common/stream.h: tests/unit/test_decode.c holds them equal

local APPLIED, DUP, GAP, PARKED, INVALID = 0, 1, 2, 3, 4
-- What this file counts, as a number: raise it with any change to what a view counts (a change
-- that needs the read model built again). A generation records the version that built it
-- ({t:T}:view); a projector meeting an older one rebuilds the tenant into a new generation
-- instead of mixing old and new figures (see tally_apply).
local VIEW_VERSION = 1
local MAX_INT = 9007199254740992 -- 2^53: exact in Lua's doubles
local MAX_SECONDS = 4000000000 -- about 126 years
local CREATED, ASSIGNED, STATUS = '1', '2', '3'
local TENANT, CATEGORY, AGENT = '10', '11', '12'
local RESOLVED = '3'

-- Whether field f of e is an integer within [lo, hi].
local function int_in(a, b, f, lo, hi)
  local n = tonumber(a[b + f])
  return n ~= nil and n == math.floor(n) and n >= lo and n <= hi
end

-- The check before any write: every field the event's type uses has the expected form.
local function valid(a, b)
  local t = a[b + F_TYPE]
  if t == TENANT or t == CATEGORY or t == AGENT then
    return int_in(a, b, F_SEQ, 1, MAX_INT)
  end
  if t ~= CREATED and t ~= ASSIGNED and t ~= STATUS then
    return false
  end
  if not (int_in(a, b, F_ID, 1, MAX_INT) and int_in(a, b, F_VERSION, 1, MAX_INT)
      and int_in(a, b, F_RECORDED, 0, MAX_INT) and int_in(a, b, F_CREATED, 0, MAX_INT)
      and int_in(a, b, F_PRIO, 1, 4) and int_in(a, b, F_TO, 1, 4)
      and a[b + F_DAY]:match('^%d%d%d%d%-%d%d%-%d%d$') and a[b + F_CAT] ~= '') then
    return false
  end
  if t == STATUS then
    return int_in(a, b, F_FROM, 1, 4) and int_in(a, b, F_SECS, 0, MAX_SECONDS)
      and int_in(a, b, F_BUCKET, 0, 10000)
  end
  return true
end

-- OPEN and IN_PROGRESS are "open": the backlog.
local function is_open(status)
  return status == '1' or status == '2'
end

--[[
A plan: what one generation (key prefix P) will be written, gathered before anything is written.
  ops       the set-like writes, in order: {cmd, key, args...}
  sums      sums[key][field] = delta of a counter, written once at the end
  zsums     the same for sorted-set scores
  versions  complaint id -> last applied version (read with one HMGET, moved as events apply)
  dirty     complaints whose version moves (a list; marked[id] says whether listed)
  refs      reference seqs that move: refs[key] = seq, and the keys as a list
]]
local function new_plan(P)
  return { P = P, ops = {}, sums = {}, zsums = {}, versions = {}, dirty = {}, marked = {},
    refs = {}, applied = 0, as_of = 0 }
end

local function push(pl, ...)
  pl.ops[#pl.ops + 1] = { ... }
end

local function add(sums, key, field, by)
  local h = sums[key]
  if not h then
    h = {}
    sums[key] = h
  end
  h[field] = (h[field] or 0) + by
end

-- The counters of one group set: all, by category, by priority, by both.
local function add4(sums, key, prefix, k, p, by)
  add(sums, key, prefix, by)
  add(sums, key, prefix .. ':k:' .. k, by)
  add(sums, key, prefix .. ':p:' .. p, by)
  add(sums, key, prefix .. ':kp:' .. k .. ':' .. p, by)
end

local function open_detail(a, b)
  -- status|priority|category|agent: what the overview lists for an open complaint
  return a[b + F_TO] .. '|' .. a[b + F_PRIO] .. '|' .. a[b + F_CAT] .. '|' .. a[b + F_AGENT]
end

local function apply_created(pl, a, b)
  local P, sums = pl.P, pl.sums
  local day = a[b + F_DAY]
  local m, dd = day:sub(1, 7), day:sub(9, 10)
  local k, p, agent = a[b + F_CAT], a[b + F_PRIO], a[b + F_AGENT]
  add4(sums, P .. 'd:' .. m, dd .. ':c', k, p, 1)
  add(pl.zsums, P .. 'kc:' .. m, k, 1)
  add(sums, P .. 'st', a[b + F_TO], 1)
  if is_open(a[b + F_TO]) then
    push(pl, 'ZADD', P .. 'open', a[b + F_CREATED], a[b + F_ID])
    push(pl, 'HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
    if agent ~= '' then
      add(sums, P .. 'ao', agent, 1)
    end
  end
end

local function apply_assigned(pl, a, b)
  if not is_open(a[b + F_TO]) then
    return -- a resolved complaint's assignee counts nowhere "now"
  end
  local P = pl.P
  if a[b + F_PREV] ~= '' then
    add(pl.sums, P .. 'ao', a[b + F_PREV], -1)
  end
  if a[b + F_AGENT] ~= '' then
    add(pl.sums, P .. 'ao', a[b + F_AGENT], 1)
  end
  push(pl, 'HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
end

local function apply_status(pl, a, b)
  local P, sums = pl.P, pl.sums
  local from, to, agent = a[b + F_FROM], a[b + F_TO], a[b + F_AGENT]
  add(sums, P .. 'st', from, -1)
  add(sums, P .. 'st', to, 1)
  local was, now = is_open(from), is_open(to)
  if was and not now then
    push(pl, 'ZREM', P .. 'open', a[b + F_ID])
    push(pl, 'HDEL', P .. 'od', a[b + F_ID])
    if agent ~= '' then
      add(sums, P .. 'ao', agent, -1)
    end
  elseif now then
    if not was then -- a reopen
      push(pl, 'ZADD', P .. 'open', a[b + F_CREATED], a[b + F_ID])
      if agent ~= '' then
        add(sums, P .. 'ao', agent, 1)
      end
    end
    push(pl, 'HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
  end
  if to ~= RESOLVED then
    return
  end
  -- A resolution, counted on the day it happened.
  local day = a[b + F_DAY]
  local m, dd = day:sub(1, 7), day:sub(9, 10)
  local k, p, secs, bk = a[b + F_CAT], a[b + F_PRIO], tonumber(a[b + F_SECS]), a[b + F_BUCKET]
  local d = P .. 'd:' .. m
  add4(sums, d, dd .. ':r', k, p, 1)
  add4(sums, d, dd .. ':s', k, p, secs)
  -- Histograms: by day (for ranges that cut a month) and by month, one key per grouping.
  -- Days have keys of their own, so a range reads only its days (or the month's others).
  local hd, hm = P .. 'hd:' .. day .. ':', P .. 'hm:' .. m .. ':'
  add(sums, hd .. 'a', bk, 1)
  add(sums, hd .. 'k', k .. ':' .. bk, 1)
  add(sums, hd .. 'p', p .. ':' .. bk, 1)
  add(sums, hd .. 'kp', k .. ':' .. p .. ':' .. bk, 1)
  add(sums, hm .. 'a', bk, 1)
  add(sums, hm .. 'a', 'n', 1)
  add(sums, hm .. 'a', 's', secs)
  for _, g in ipairs({ { 'k', k }, { 'p', p }, { 'kp', k .. ':' .. p } }) do
    add(sums, hm .. g[1], g[2] .. ':' .. bk, 1)
    add(sums, hm .. g[1], g[2] .. ':n', 1)
    add(sums, hm .. g[1], g[2] .. ':s', secs)
  end
  if agent ~= '' then
    local ad, adm = P .. 'ad:' .. day, P .. 'ad:' .. m
    add(sums, ad, agent .. ':n', 1)
    add(sums, ad, agent .. ':s', secs)
    add(sums, adm, agent .. ':n', 1)
    add(sums, adm, agent .. ':s', secs)
    add(pl.zsums, P .. 'lb:' .. m, agent, 1)
  end
end

-- Reference data: the newest seq wins, so a late duplicate cannot undo a rename. The seqs are
-- recorded at the end with the versions (pl.refs), so a failed call leaves them untouched.
local function apply_reference(pl, a, b)
  local P, refs = pl.P, pl.refs
  local key = a[b + F_TYPE] .. ':' .. a[b + F_REF]
  local last = refs[key]
  if last == nil then
    last = tonumber(redis.call('HGET', P .. 'refseq', key) or '0')
  end
  if tonumber(a[b + F_SEQ]) <= last then
    return DUP
  end
  if refs[key] == nil then
    refs[#refs + 1] = key
  end
  refs[key] = tonumber(a[b + F_SEQ])
  if a[b + F_TYPE] == TENANT then
    push(pl, 'HSET', P .. 'tenant', 'name', a[b + F_NAME], 'time_zone', a[b + F_TZ])
  elseif a[b + F_TYPE] == CATEGORY then
    push(pl, 'HSET', P .. 'cats', a[b + F_REF], a[b + F_NAME])
  elseif a[b + F_TYPE] == AGENT then
    push(pl, 'HSET', P .. 'agents', a[b + F_REF], a[b + F_NAME])
  end
  return APPLIED
end

-- One valid event (at a[b + ...]) into plan pl: APPLIED, DUP or GAP (nothing recorded).
local function step(pl, a, b)
  local t = a[b + F_TYPE]
  local status
  if t == TENANT or t == CATEGORY or t == AGENT then
    status = apply_reference(pl, a, b)
  else
    local id, v = a[b + F_ID], tonumber(a[b + F_VERSION])
    local last = pl.versions[id]
    if v <= last then
      return DUP
    elseif v > last + 1 then
      return GAP
    end
    if t == CREATED then
      apply_created(pl, a, b)
    elseif t == ASSIGNED then
      apply_assigned(pl, a, b)
    else
      apply_status(pl, a, b)
    end
    if not pl.marked[id] then
      pl.marked[id] = true
      pl.dirty[#pl.dirty + 1] = id
    end
    pl.versions[id] = v
    status = APPLIED
  end
  if status == APPLIED then
    pl.applied = pl.applied + 1
    local rec = tonumber(a[b + F_RECORDED])
    if rec > pl.as_of then
      pl.as_of = rec
    end
  end
  return status
end

-- Runs cmd key unpack(list, from, to) (the whole list by default; nothing when empty) in
-- chunks small enough for Lua's stack; HMGET answers are joined (one call's answer as it is).
local CHUNK = 4000
local function chunked(cmd, key, list, step_, from, to)
  from, to = from or 1, to or #list
  if to < from then
    return {}
  end
  if to - from < CHUNK then
    return redis.call(cmd, key, unpack(list, from, to))
  end
  local out = {}
  for i = from, to, CHUNK do
    local r = redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, to)))
    if step_ then
      for j = 1, #r do
        out[#out + 1] = r[j]
      end
    end
  end
  return out
end

-- The complaint ids of the batch's complaint events, each once.
local function batch_ids(args, base0, n, nf)
  local ids, seen = {}, {}
  for i = 1, n do
    local b = base0 + (i - 1) * nf
    local t, id = args[b + F_TYPE], args[b + F_ID]
    if (t == CREATED or t == ASSIGNED or t == STATUS) and not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- The last applied versions of ids in the hash key (0 for none), as a table.
local function read_versions(key, ids)
  local v = {}
  if #ids > 0 then
    local got = chunked('HMGET', key, ids, true)
    for i, id in ipairs(ids) do
      v[id] = tonumber(got[i]) or 0
    end
  end
  return v
end

-- Adds to want (key -> type) every key plan pl writes.
local function plan_keys(pl, want)
  want[pl.P .. 'cv'] = 'hash'
  want[pl.P .. 'refseq'] = 'hash'
  want[pl.P .. 'fresh'] = 'hash'
  for _, o in ipairs(pl.ops) do
    want[o[2]] = (o[1] == 'ZADD' or o[1] == 'ZREM') and 'zset' or 'hash'
  end
  for key in pairs(pl.sums) do
    want[key] = 'hash'
  end
  for key in pairs(pl.zsums) do
    want[key] = 'zset'
  end
end

-- A key of want that exists with another type (written by something else): the error reply.
local function check_types(want)
  for key, type_ in pairs(want) do
    local t = redis.call('TYPE', key).ok
    if t ~= 'none' and t ~= type_ then
      return redis.error_reply('WRONGTYPE tally: ' .. key .. ' is a ' .. t .. ', not a ' .. type_)
    end
  end
  return nil
end

-- Adds deltas[i] to field names[from + i - 1] of hash key, for i = 1..n: one HMGET of the
-- fields, one HSET of the sums (integers: '%d' formats them exactly and far faster than '%.0f').
local function write_sums(key, names, from, n, deltas)
  if n > 0 then
    local old = chunked('HMGET', key, names, true, from, from + n - 1)
    local kv = {}
    for i = 1, n do
      kv[2 * i - 1] = names[from + i - 1]
      kv[2 * i] = string.format('%d', (tonumber(old[i]) or 0) + deltas[i])
    end
    chunked('HSET', key, kv, false)
  end
end

-- Records in generation P's fresh hash that applied events were applied now, the newest of
-- them recorded at as_of.
local function write_fresh(P, applied, as_of, now)
  if applied > 0 then
    local fresh = P .. 'fresh'
    local old = tonumber(redis.call('HGET', fresh, 'as_of_ms') or '0')
    if as_of > old then
      redis.call('HSET', fresh, 'as_of_ms', string.format('%.0f', as_of))
    end
    redis.call('HSET', fresh, 'applied_ms', now)
    redis.call('HINCRBY', fresh, 'events', applied)
  end
end

-- Writes plan pl: per counter key one HMGET of the fields and one HSET of the new values.
local function write_plan(pl, now)
  local P = pl.P
  for _, o in ipairs(pl.ops) do
    redis.call(unpack(o))
  end
  for key, fields in pairs(pl.sums) do
    local names, deltas = {}, {}
    for field, by in pairs(fields) do
      if by ~= 0 then
        names[#names + 1] = field
        deltas[#deltas + 1] = by
      end
    end
    write_sums(key, names, 1, #names, deltas)
  end
  for key, members in pairs(pl.zsums) do
    for member, by in pairs(members) do
      redis.call('ZINCRBY', key, by, member)
    end
  end
  if #pl.dirty > 0 then
    local kv = {}
    for _, id in ipairs(pl.dirty) do
      kv[#kv + 1] = id
      kv[#kv + 1] = pl.versions[id]
    end
    chunked('HSET', P .. 'cv', kv, false)
  end
  for _, key in ipairs(pl.refs) do
    redis.call('HSET', P .. 'refseq', key, string.format('%.0f', pl.refs[key]))
  end
  write_fresh(P, pl.applied, pl.as_of, now)
end

-- Checks the header of an apply call: n events of nf fields from args[base0 + 1].
local function check_batch(args, base0, n, nf, name)
  if nf ~= NFIELDS or n == nil or #args ~= base0 + n * nf then
    return redis.error_reply(name .. ': expected ' .. NFIELDS .. ' fields per event')
  end
  return nil
end

-- Records the live events the rebuild generation could not take yet (gaps: id -> version) in
-- {t:T}:rebuild:gaps, keeping the highest version per complaint.
local function record_gaps(key, gaps, list)
  if #list == 0 then
    return
  end
  local old = chunked('HMGET', key, list, true)
  local kv = {}
  for i, id in ipairs(list) do
    local v = gaps[id]
    local o = tonumber(old[i]) or 0
    kv[#kv + 1] = id
    kv[#kv + 1] = string.format('%.0f', v > o and v or o)
  end
  chunked('HSET', key, kv, false)
end

-- Marks a new rebuild of the tenant (tag) into the next free generation, held by owner until
-- now + lease; frozen = '1' when the current generation is of an older view (it no longer
-- receives live events, so query-svc reports it complete only up to started_ms).
local function new_rebuild(tag, g, owner, now, lease, frozen)
  redis.call('UNLINK', tag .. 'rebuild:gaps', tag .. 'rebuild:invalid')
  redis.call('HSET', tag .. 'rebuild', 'gen', g, 'owner', owner, 'lease_until',
    string.format('%.0f', now + lease), 'view', VIEW_VERSION, 'frozen', frozen, 'started_ms',
    string.format('%.0f', now), 'updated_ms', string.format('%.0f', now), 'cursor', 0, 'done', 0,
    'phase', 'reading')
  return g
end

-- The view version of the tenant's current generation P, and whether it must be recorded (no
-- {t:T}:view yet): a generation with data and no record was built before views were recorded,
-- by view 1; one without data is this view's.
local function current_view(tag, P)
  local v = tonumber(redis.call('GET', tag .. 'view') or '')
  if v then
    return v, false
  end
  if redis.call('EXISTS', P .. 'fresh') == 1 then
    return 1, true
  end
  return VIEW_VERSION, true
end

-- The generation a new rebuild of the tenant would build: one above the current one and every
-- one still to delete.
local function next_gen(tag)
  local g = tonumber(redis.call('GET', tag .. 'gen') or '1')
  for _, old in ipairs(redis.call('SMEMBERS', tag .. 'gc')) do
    g = math.max(g, tonumber(old) or 0)
  end
  return string.format('%.0f', g + 1)
end

-- Records that the rebuild's generation must read id's history again (up to version v); id
-- 'ref' stands for the tenant's reference events (v = the seq).
local function note_gap(gaps, gap_ids, id, v)
  if not gaps[id] then
    gap_ids[#gap_ids + 1] = id
  end
  gaps[id] = math.max(gaps[id] or 0, v)
end

--[[
tally_apply: the live path (the projector, and tally dlq replay through it).
While a rebuild of the tenant runs ({t:T}:rebuild names its generation), every event is also
applied to the rebuild's generation in the same atomic step, with its own versions: a
duplicate there is dropped by version, and an event that finds an earlier version missing
there (the rebuilder has not read it from PostgreSQL yet), or that belongs to a parked
complaint, is recorded in {t:T}:rebuild:gaps; the rebuilder reads those complaints again
before the generation may become current.
Views: the current generation is applied to only when it was built by this VIEW_VERSION. One
of an older view is left as it is (the figures it shows stay whole, of the old view) and the
events go to a rebuild of this view, begun here if none runs (held by nobody: a rebuilder,
the projector's or `tally rebuild`, takes it over). A rebuild of another view gets the
events as gaps, for its rebuilder. A generation of a newer view than this is refused (an
error: this projector is older than the data; the events are retried, then parked).
The reply: the statuses, and one more element, the generation, while a rebuild runs that no
rebuilder has taken over yet (the projector lists it in tally:rebuilds for the runners).
]]
local function apply(keys, args)
  local tag = keys[1]:sub(1, #keys[1] - 3) -- "{t:<tenant>}:" from "{t:<tenant>}:gen"
  local gen = redis.call('GET', keys[1]) or '1'
  local now, n, nf = args[1], tonumber(args[2]), tonumber(args[3])
  local bad = check_batch(args, 3, n, nf, 'tally_apply')
  if bad then
    return bad
  end
  local cview, record_view = current_view(tag, tag .. gen .. ':')
  if cview > VIEW_VERSION then
    return redis.error_reply('VIEW tally_apply: the read model of ' .. tag .. ' is of view '
      .. cview .. ', newer than this projector\'s ' .. VIEW_VERSION .. ': deploy the newer one')
  end
  local ids = batch_ids(args, 3, n, nf)
  local cur
  if cview == VIEW_VERSION then
    cur = new_plan(tag .. gen .. ':')
    cur.versions = read_versions(cur.P .. 'cv', ids)
  end
  local rb = redis.call('HMGET', tag .. 'rebuild', 'gen', 'view', 'owner')
  local rgen, rview, replaced, begin = rb[1], tonumber(rb[2] or ''), nil, false
  local unheld = rgen and rb[3] == '' -- a rebuild nobody took over yet: say so in the reply
  if not cur and (not rgen or (rview or 0) < VIEW_VERSION) then
    replaced = rgen -- an older view's rebuild: given up for this one (written after the checks)
    rgen, rview, begin, unheld = next_gen(tag), VIEW_VERSION, true, true
  end
  local nxt, foreign = nil, false
  if rgen and rgen ~= gen then
    if rview == VIEW_VERSION then
      nxt = new_plan(tag .. rgen .. ':')
      nxt.versions = read_versions(nxt.P .. 'cv', ids)
    else
      foreign = true -- another view's rebuild: its rebuilder reads what we saw again
    end
  end
  local gaps, gap_ids = {}, {}
  local any_parked = redis.call('EXISTS', tag .. 'parked') == 1
  local out = {}
  for i = 1, n do
    local a, b = args, 3 + (i - 1) * nf -- the event's fields are a[b + F_...]
    local t = a[b + F_TYPE]
    local is_ref = t == TENANT or t == CATEGORY or t == AGENT
    local status
    if not valid(a, b) then
      status = INVALID
    elseif not is_ref and any_parked
        and redis.call('HEXISTS', tag .. 'parked', a[b + F_ID]) == 1 then
      status = PARKED
      if nxt or foreign then -- the rebuilder reads its history again, so the flip can unmark it
        note_gap(gaps, gap_ids, a[b + F_ID], tonumber(a[b + F_VERSION]))
      end
    else
      status = cur and step(cur, a, b) or DUP
      local s2 = nxt and step(nxt, a, b)
      if s2 == GAP or (foreign and not is_ref) then
        note_gap(gaps, gap_ids, a[b + F_ID], tonumber(a[b + F_VERSION]))
      elseif foreign then
        note_gap(gaps, gap_ids, 'ref', tonumber(a[b + F_SEQ]))
      end
      if not cur then -- only the rebuild's generation takes it: done once it has it or noted it
        status = s2 == APPLIED and APPLIED or DUP
      end
    end
    out[i] = status
  end
  local want = {}
  if cur then
    plan_keys(cur, want)
  end
  if nxt then
    plan_keys(nxt, want)
  end
  if #gap_ids > 0 then
    want[tag .. 'rebuild:gaps'] = 'hash'
  end
  if begin or record_view then
    want[tag .. 'rebuild'] = 'hash'
    want[tag .. 'view'] = 'string'
    want[tag .. 'gc'] = 'set'
  end
  bad = check_types(want)
  if bad then
    return bad
  end
  if record_view then
    redis.call('SET', tag .. 'view', cview)
  end
  if begin then
    if replaced then
      redis.call('SADD', tag .. 'gc', replaced)
    end
    new_rebuild(tag, rgen, '', tonumber(now), 0, '1')
  end
  if cur then
    write_plan(cur, now)
  end
  if nxt then
    write_plan(nxt, now)
  end
  record_gaps(tag .. 'rebuild:gaps', gaps, gap_ids)
  if unheld then
    out[n + 1] = rgen
  end
  return out
end

redis.register_function('tally_apply', apply)

--[[
tally_apply_merged: the live path's fast way, for a run of one tenant's complaint events that
the projector has already counted (projector/plan.h, with the rules of apply_created,
apply_assigned and apply_status):
FCALL tally_apply_merged 1 {t:<tenant>}:gen <view> <now_ms> <events> <as_of_ms>
  <nc> (<complaint> <version before the run> <last version>)*nc
  <n> (<created_ms> <complaint>)*n     added to open
  <n> <complaint>*n                    removed from open
  <n> (<complaint> <detail>)*n         set in od
  <n> <complaint>*n                    deleted from od
  <nkeys> (<h|z> <key under the generation> <nf> <field>*nf <delta>*nf)*nkeys
Returns 0 when applied. Returns 1, with nothing written, when the run must go through
tally_apply event by event instead: a complaint's applied version is not the one the run
starts after (a redelivery, a gap, an event retried out of order), a rebuild runs, a complaint
of the tenant is parked, or the generation's view is not recorded as this one. A plan of
another view, or a malformed one, is an error (nothing written): the projector then takes the
per-event way too.
]]
--[[
Writes the plan at args[i0] (<view> <now_ms> <events> <as_of_ms> ..., as tally_apply_merged
takes it) to generation P: 0, with the plan's complaint ids and their versions now (id ->
version); 1,
with nothing written, when a complaint's applied version is not the one its run starts after;
or an error reply (nothing written) for a plan of another view or a malformed one.
]]
local function write_merged(P, args, i0, name)
  if tonumber(args[i0]) ~= VIEW_VERSION then
    return redis.error_reply('VIEW ' .. name .. ': the plan counts view ' .. tostring(args[i0])
      .. ', this function ' .. VIEW_VERSION)
  end
  local now, events, as_of = args[i0 + 1], tonumber(args[i0 + 2]), tonumber(args[i0 + 3])
  local i = i0 + 4
  local malformed = redis.error_reply('PLAN ' .. name .. ': malformed arguments')
  local function take(k) -- the next k arguments as a list, or nil past the end
    if k == nil or k < 0 or i + k - 1 > #args then
      return nil
    end
    local out = {}
    for j = 1, k do
      out[j] = args[i + j - 1]
    end
    i = i + k
    return out
  end
  local function count()
    local c = tonumber(args[i])
    i = i + 1
    return c
  end
  if not events or not as_of then
    return malformed
  end
  local nc = count()
  local cpl = nc and take(3 * nc)
  local adds = cpl and take(2 * (count() or -1))
  local rems = adds and take(count())
  local sets = rems and take(2 * (count() or -1))
  local dels = sets and take(count())
  local nkeys = dels and count()
  if not nkeys then
    return malformed
  end
  local ids, vers, versions = {}, {}, {}
  for c = 1, nc do
    local id, before, last = cpl[3 * c - 2], tonumber(cpl[3 * c - 1]), cpl[3 * c]
    versions[id] = tonumber(last)
    if not before or not versions[id] then
      return malformed
    end
    ids[c] = id
    vers[#vers + 1] = id
    vers[#vers + 1] = last
    cpl[c] = before
  end
  for c = 1, #adds, 2 do
    if not tonumber(adds[c]) then
      return malformed
    end
  end
  local want = { [P .. 'cv'] = 'hash', [P .. 'fresh'] = 'hash' }
  if #adds + #rems > 0 then
    want[P .. 'open'] = 'zset'
  end
  if #sets + #dels > 0 then
    want[P .. 'od'] = 'hash'
  end
  -- The counters are read where they are in args: their fields at f0 .. f0 + nf - 1 (given
  -- to HMGET as they are), the deltas after them.
  local counters, nargs = {}, #args
  for _ = 1, nkeys do
    local kind, key, nf = args[i], args[i + 1], tonumber(args[i + 2])
    if (kind ~= 'h' and kind ~= 'z') or not key or not nf or nf < 0
        or i + 2 + 2 * nf > nargs then
      return malformed
    end
    local f0, deltas = i + 3, {}
    for f = 1, nf do
      deltas[f] = tonumber(args[f0 + nf + f - 1])
      if not deltas[f] then
        return malformed
      end
    end
    counters[#counters + 1] = { kind, P .. key, f0, nf, deltas }
    want[P .. key] = kind == 'h' and 'hash' or 'zset'
    i = f0 + 2 * nf
  end
  if i ~= nargs + 1 then
    return malformed
  end
  if nc > 0 then
    local got = chunked('HMGET', P .. 'cv', ids, true)
    for c = 1, nc do
      if (tonumber(got[c]) or 0) ~= cpl[c] then
        return 1
      end
    end
  end
  local bad = check_types(want)
  if bad then
    return bad
  end
  if #adds > 0 then
    chunked('ZADD', P .. 'open', adds, false)
  end
  if #rems > 0 then
    chunked('ZREM', P .. 'open', rems, false)
  end
  if #sets > 0 then
    chunked('HSET', P .. 'od', sets, false)
  end
  if #dels > 0 then
    chunked('HDEL', P .. 'od', dels, false)
  end
  for _, ct in ipairs(counters) do
    if ct[1] == 'h' then
      write_sums(ct[2], args, ct[3], ct[4], ct[5])
    else
      for f = 1, ct[4] do
        redis.call('ZINCRBY', ct[2], ct[5][f], args[ct[3] + f - 1])
      end
    end
  end
  if #vers > 0 then
    chunked('HSET', P .. 'cv', vers, false)
  end
  write_fresh(P, events, as_of, now)
  return 0, ids, versions
end

local function apply_merged(keys, args)
  local tag = keys[1]:sub(1, #keys[1] - 3)
  if tonumber(redis.call('GET', tag .. 'view') or '') ~= VIEW_VERSION
      or redis.call('EXISTS', tag .. 'rebuild', tag .. 'parked') > 0 then
    return 1
  end
  local P = tag .. (redis.call('GET', keys[1]) or '1') .. ':'
  return (write_merged(P, args, 1, 'tally_apply_merged'))
end

redis.register_function('tally_apply_merged', apply_merged)

--[[
The rebuild of a tenant's read model into a new generation (projector/rebuild.c drives it;
docs/keyspace.md `{t:T}:rebuild`). Every function takes KEYS[1] = {t:<tenant>}:rebuild, the
hash of the running rebuild:
  gen          the generation being built
  owner        the rebuilder that holds it; lease_until (Unix ms) while it lives
  view         the VIEW_VERSION that builds it; frozen '1' when the current generation is of an
               older view (it receives no live events until the flip)
  started_ms, updated_ms, up_to_seq (the last seq of the tenant when it began), total (events
  of the tenant up to up_to_seq), done (events read), cursor (the last seq read), rate (events/s)
  phase        'reading' (the event log up to up_to_seq), 'gaps' (complaints live events found
               incomplete), 'flipping'
Only the owner writes; another rebuilder may take the rebuild over once the lease has expired
(a crashed rebuilder's work is resumed from cursor).
]]
local function rebuild_tag(keys)
  return keys[1]:sub(1, #keys[1] - 7) -- "{t:<tenant>}:" from "{t:<tenant>}:rebuild"
end

-- The rebuild hash as a table (empty when none runs).
local function rebuild_state(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do
    h[flat[i]] = flat[i + 1]
  end
  return h
end

local function owner_error(key, h, owner)
  if not h.gen then
    return redis.error_reply('NOREBUILD no rebuild of ' .. key .. ' runs')
  end
  if h.owner ~= owner then
    return redis.error_reply('NOTOWNER the rebuild is held by ' .. (h.owner or '?'))
  end
  return nil
end

-- tally_rebuild_begin KEYS[1] owner now_ms lease_ms: starts a rebuild of this VIEW_VERSION, or
-- takes over one whose owner's lease has expired (one begun by tally_apply has none). Returns {gen, resumed (0/1), cursor, up_to_seq, total, done,
-- started_ms, phase}; BUSY when another owner holds it.
local function rebuild_begin(keys, args)
  local tag, owner, now, lease = rebuild_tag(keys), args[1], tonumber(args[2]), tonumber(args[3])
  local h = rebuild_state(keys[1])
  if h.gen then
    if h.owner ~= owner and tonumber(h.lease_until or '0') > now then
      return redis.error_reply('BUSY a rebuild of this tenant runs: owner ' .. (h.owner or '?')
        .. ', generation ' .. h.gen .. ', ' .. (h.done or '0') .. ' of ' .. (h.total or '?')
        .. ' events')
    end
    if tonumber(h.view or '') ~= VIEW_VERSION then
      return redis.error_reply('VIEW the running rebuild is of view ' .. (h.view or '?')
        .. ', this build counts view ' .. VIEW_VERSION .. ': abort it (tally rebuild --abort)'
        .. ' or finish it with a build of that view')
    end
    redis.call('HSET', keys[1], 'owner', owner, 'lease_until', now + lease, 'updated_ms', now)
    return { h.gen, 1, h.cursor or '0', h.up_to_seq or '', h.total or '', h.done or '0',
      h.started_ms or '0', h.phase or 'reading' }
  end
  local cview = current_view(tag, tag .. (redis.call('GET', tag .. 'gen') or '1') .. ':')
  if cview > VIEW_VERSION then
    return redis.error_reply('VIEW the tenant\'s generation is of view ' .. cview
      .. ', newer than this build\'s ' .. VIEW_VERSION .. ': rebuild it with a newer build')
  end
  local g = new_rebuild(tag, next_gen(tag), owner, now, lease,
    cview < VIEW_VERSION and '1' or '0')
  return { g, 0, '0', '', '', '0', string.format('%.0f', now), 'reading' }
end

-- tally_rebuild_set KEYS[1] owner now_ms lease_ms field value ...: the owner records progress
-- (and renews its lease).
local function rebuild_set(keys, args)
  local h = rebuild_state(keys[1])
  local bad = owner_error(keys[1], h, args[1])
  if bad then
    return bad
  end
  local kv = { 'lease_until', tonumber(args[2]) + tonumber(args[3]), 'updated_ms', args[2] }
  for i = 4, #args do
    kv[#kv + 1] = args[i]
  end
  redis.call('HSET', keys[1], unpack(kv))
  return 1
end

-- After a rebuild call's writes: a complaint of ids leaves {t:T}:rebuild:gaps (gk) once its
-- recorded version is applied (versions[id], id -> version) or never will be (frozen[id]).
local function clear_gaps(gk, ids, versions, frozen)
  if #ids > 0 and redis.call('EXISTS', gk) == 1 then
    local got = chunked('HMGET', gk, ids, true)
    local done = {}
    for i, id in ipairs(ids) do
      local g = tonumber(got[i])
      if g and (versions[id] >= g or frozen[id]) then -- done, or never to be
        done[#done + 1] = id
      end
    end
    if #done > 0 then
      chunked('HDEL', gk, done, false)
    end
  end
end

-- The owner's progress, recorded with a call's writes: its lease renewed, cursor ('' keeps
-- it), read events added to done.
local function record_progress(key, now, lease, cursor, read)
  local kv = { 'lease_until', now + lease, 'updated_ms', now }
  if cursor ~= '' then
    kv[#kv + 1] = 'cursor'
    kv[#kv + 1] = cursor
  end
  redis.call('HSET', key, unpack(kv))
  if read and read > 0 then
    redis.call('HINCRBY', key, 'done', read)
  end
end

--[[
tally_rebuild_apply KEYS[1] owner now_ms lease_ms cursor read n F <events>: the owner applies
events read from PostgreSQL to the rebuild's generation. A duplicate is dropped by version; a
gap is skipped (an event not committed when the rebuilder read past its seq: the live path
brings it). An event the view refuses (INVALID) stops its complaint there, as parking does, and
is recorded in {t:T}:rebuild:invalid. A parked complaint gets its whole history from
PostgreSQL (the flip then deletes its mark). After the writes, a complaint of {t:T}:rebuild:gaps whose recorded version is now applied
leaves it. cursor ('' to keep) and read (added to done) record the progress with the writes.
Returns the statuses, as tally_apply.
]]
local function rebuild_apply(keys, args)
  local tag, owner, now, lease = rebuild_tag(keys), args[1], args[2], tonumber(args[3])
  local cursor, read = args[4], tonumber(args[5])
  local n, nf = tonumber(args[6]), tonumber(args[7])
  local bad = check_batch(args, 7, n, nf, 'tally_rebuild_apply')
  if bad then
    return bad
  end
  local h = rebuild_state(keys[1])
  bad = owner_error(keys[1], h, owner)
  if bad then
    return bad
  end
  local nxt = new_plan(tag .. h.gen .. ':')
  local ids = batch_ids(args, 7, n, nf)
  nxt.versions = read_versions(nxt.P .. 'cv', ids)
  -- complaint -> the last version before an event the view refused, kept for the call's
  -- complaints in {t:T}:rebuild:invalid (the flip leaves those parked)
  local ik = tag .. 'rebuild:invalid'
  local frozen = {}
  if #ids > 0 and redis.call('EXISTS', ik) == 1 then
    local got = chunked('HMGET', ik, ids, true)
    for i, id in ipairs(ids) do
      frozen[id] = tonumber(got[i])
    end
  end
  local refused = {}
  local ref_seq = 0 -- the newest reference event of the batch
  local out = {}
  for i = 1, n do
    local a, b = args, 7 + (i - 1) * nf
    local t = a[b + F_TYPE]
    if t == TENANT or t == CATEGORY or t == AGENT then
      ref_seq = math.max(ref_seq, tonumber(a[b + F_SEQ]) or 0)
    end
    if not valid(a, b) then
      out[i] = INVALID -- its complaint stops before it here, as a parked one would
      local id, v = a[b + F_ID], tonumber(a[b + F_VERSION])
      if v and v >= 1 and v == math.floor(v) and (frozen[id] or v) >= v then
        frozen[id] = v - 1
        refused[#refused + 1] = id
      end
    elseif frozen[a[b + F_ID]] and tonumber(a[b + F_VERSION]) > frozen[a[b + F_ID]] then
      out[i] = PARKED
    else
      out[i] = step(nxt, a, b)
    end
  end
  local want = {}
  plan_keys(nxt, want)
  bad = check_types(want)
  if bad then
    return bad
  end
  write_plan(nxt, now)
  for _, id in ipairs(refused) do
    redis.call('HSET', ik, id, string.format('%.0f', frozen[id]))
  end
  local gk = tag .. 'rebuild:gaps'
  clear_gaps(gk, ids, nxt.versions, frozen)
  if ref_seq > 0 then
    local g = tonumber(redis.call('HGET', gk, 'ref'))
    if g and g <= ref_seq then
      redis.call('HDEL', gk, 'ref')
    end
  end
  record_progress(keys[1], now, lease, cursor, read)
  return out
end

--[[
tally_rebuild_apply_merged KEYS[1] owner now_ms lease_ms cursor read <plan>: the owner writes a
run of events it has counted (projector/plan.h; <plan> as tally_apply_merged takes it after its
key) to the rebuild's generation, recording cursor and read as tally_rebuild_apply does.
Returns 0 when written, or 1 with nothing written when the run must go through
tally_rebuild_apply event by event: a complaint's version there is not the one the run starts
after (a live event applied it first, or an event not committed when it was read), or the view
refused an event of the tenant during this rebuild ({t:T}:rebuild:invalid).
]]
local function rebuild_apply_merged(keys, args)
  local tag, owner, now, lease = rebuild_tag(keys), args[1], args[2], tonumber(args[3])
  local cursor, read = args[4], tonumber(args[5])
  local h = rebuild_state(keys[1])
  local bad = owner_error(keys[1], h, owner)
  if bad then
    return bad
  end
  if not lease or not read or redis.call('EXISTS', tag .. 'rebuild:invalid') == 1 then
    return lease and read and 1
      or redis.error_reply('PLAN tally_rebuild_apply_merged: malformed arguments')
  end
  local status, ids, versions = write_merged(tag .. h.gen .. ':', args, 6,
    'tally_rebuild_apply_merged')
  if status ~= 0 then
    return status
  end
  clear_gaps(tag .. 'rebuild:gaps', ids, versions, {})
  record_progress(keys[1], now, lease, cursor, read)
  return 0
end

-- tally_rebuild_gaps KEYS[1] owner count: up to count complaints of {t:T}:rebuild:gaps, and
-- how many there are: {n, id...}.
local function rebuild_gaps(keys, args)
  local h = rebuild_state(keys[1])
  local bad = owner_error(keys[1], h, args[1])
  if bad then
    return bad
  end
  local gk = rebuild_tag(keys) .. 'rebuild:gaps'
  local r = redis.call('HSCAN', gk, 0, 'COUNT', tonumber(args[2]))
  local out = { redis.call('HLEN', gk) }
  for i = 1, #r[2], 2 do
    out[#out + 1] = r[2][i]
  end
  return out
end

-- tally_rebuild_flip KEYS[1] owner: once no live event waits for its complaint (no gaps), the
-- rebuild's generation becomes current in one step; the old one is listed in {t:T}:gc for
-- deletion, and the parked marks of complaints now whole are deleted. Returns {old generation,
-- new generation, marks deleted}; GAPS n while complaints wait.
local function rebuild_flip(keys, args)
  local tag = rebuild_tag(keys)
  local h = rebuild_state(keys[1])
  local bad = owner_error(keys[1], h, args[1])
  if bad then
    return bad
  end
  bad = check_types({ [tag .. 'gen'] = 'string', [tag .. 'view'] = 'string', [tag .. 'gc'] = 'set',
    [tag .. 'parked'] = 'hash', [tag .. 'rebuild:invalid'] = 'hash',
    [tag .. 'rebuild:gaps'] = 'hash' })
  if bad then
    return bad
  end
  local waiting = redis.call('HLEN', tag .. 'rebuild:gaps')
  if waiting > 0 then
    return redis.error_reply('GAPS ' .. waiting .. ' complaints wait for the rebuilder')
  end
  local old = redis.call('GET', tag .. 'gen') or '1'
  if old == h.gen then
    return redis.error_reply('FLIPPED generation ' .. h.gen .. ' is current already')
  end
  local cview = tonumber(redis.call('GET', tag .. 'view') or '1') or 1
  if cview > tonumber(h.view or '0') then
    return redis.error_reply('VIEW the current generation is of view ' .. cview
      .. ', newer than the rebuild\'s ' .. (h.view or '?'))
  end
  redis.call('SET', tag .. 'gen', h.gen)
  redis.call('SET', tag .. 'view', h.view)
  redis.call('SADD', tag .. 'gc', old)
  -- A parked complaint has its whole history in the new generation (every event parked since
  -- the rebuild began was read again as a gap), unless the view refused one of its events.
  local unmarked = 0
  local parked = redis.call('HKEYS', tag .. 'parked')
  if #parked > 0 then
    local inv = chunked('HMGET', tag .. 'rebuild:invalid', parked, true)
    local free = {}
    for i, id in ipairs(parked) do
      if not inv[i] then
        free[#free + 1] = id
      end
    end
    if #free > 0 then
      chunked('HDEL', tag .. 'parked', free, false)
      unmarked = #free
    end
  end
  redis.call('UNLINK', keys[1], tag .. 'rebuild:gaps', tag .. 'rebuild:invalid')
  return { old, h.gen, unmarked }
end

-- tally_rebuild_abort KEYS[1]: gives a rebuild up (whoever holds it); its generation goes to
-- {t:T}:gc. Returns the generation, or nil when none ran.
local function rebuild_abort(keys, _)
  local tag = rebuild_tag(keys)
  local g = redis.call('HGET', keys[1], 'gen')
  if not g then
    return false
  end
  redis.call('SADD', tag .. 'gc', g)
  redis.call('UNLINK', keys[1], tag .. 'rebuild:gaps', tag .. 'rebuild:invalid')
  return g
end

-- tally_rebuild_note KEYS[1] id version: the projector is parking an event of complaint id on
-- its own (it failed to apply, or could not be decoded): while a rebuild runs, its rebuilder
-- reads that complaint again, so the flip never unmarks a complaint whose event it lacks.
-- Returns 1 when noted, 0 when no rebuild runs.
local function rebuild_note(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then
    return 0
  end
  local gk = rebuild_tag(keys) .. 'rebuild:gaps'
  local bad = check_types({ [gk] = 'hash' })
  if bad then
    return bad
  end
  local v = tonumber(args[2]) or 0
  local old = tonumber(redis.call('HGET', gk, args[1]) or '0') or 0
  redis.call('HSET', gk, args[1], string.format('%.0f', v > old and v or old))
  return 1
end

redis.register_function('tally_rebuild_begin', rebuild_begin)
redis.register_function('tally_rebuild_note', rebuild_note)
redis.register_function('tally_rebuild_set', rebuild_set)
redis.register_function('tally_rebuild_apply', rebuild_apply)
redis.register_function('tally_rebuild_apply_merged', rebuild_apply_merged)
redis.register_function('tally_rebuild_gaps', rebuild_gaps)
redis.register_function('tally_rebuild_flip', rebuild_flip)
redis.register_function('tally_rebuild_abort', rebuild_abort)
