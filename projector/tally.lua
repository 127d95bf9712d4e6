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

-- The set-like writes of the call, in order, made after the checks: {cmd, key, args...}.
local ops = {}
local function push(...)
  ops[#ops + 1] = { ... }
end

-- Sums of increments: sums[key][field] = delta, written once at the end.
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

local function apply_created(P, sums, zsums, a, b)
  local day = a[b + F_DAY]
  local m, dd = day:sub(1, 7), day:sub(9, 10)
  local k, p, agent = a[b + F_CAT], a[b + F_PRIO], a[b + F_AGENT]
  add4(sums, P .. 'd:' .. m, dd .. ':c', k, p, 1)
  add(zsums, P .. 'kc:' .. m, k, 1)
  add(sums, P .. 'st', a[b + F_TO], 1)
  if is_open(a[b + F_TO]) then
    push('ZADD', P .. 'open', a[b + F_CREATED], a[b + F_ID])
    push('HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
    if agent ~= '' then
      add(sums, P .. 'ao', agent, 1)
    end
  end
end

local function apply_assigned(P, sums, a, b)
  if not is_open(a[b + F_TO]) then
    return -- a resolved complaint's assignee counts nowhere "now"
  end
  if a[b + F_PREV] ~= '' then
    add(sums, P .. 'ao', a[b + F_PREV], -1)
  end
  if a[b + F_AGENT] ~= '' then
    add(sums, P .. 'ao', a[b + F_AGENT], 1)
  end
  push('HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
end

local function apply_status(P, sums, zsums, a, b)
  local from, to, agent = a[b + F_FROM], a[b + F_TO], a[b + F_AGENT]
  add(sums, P .. 'st', from, -1)
  add(sums, P .. 'st', to, 1)
  local was, now = is_open(from), is_open(to)
  if was and not now then
    push('ZREM', P .. 'open', a[b + F_ID])
    push('HDEL', P .. 'od', a[b + F_ID])
    if agent ~= '' then
      add(sums, P .. 'ao', agent, -1)
    end
  elseif now then
    if not was then -- a reopen
      push('ZADD', P .. 'open', a[b + F_CREATED], a[b + F_ID])
      if agent ~= '' then
        add(sums, P .. 'ao', agent, 1)
      end
    end
    push('HSET', P .. 'od', a[b + F_ID], open_detail(a, b))
  end
  if to ~= RESOLVED then
    return
  end
  -- A resolution, counted on the day it happened.
  local day = a[b + F_DAY]
  local m, dd = day:sub(1, 7), day:sub(9, 10)
  local k, p, secs, b = a[b + F_CAT], a[b + F_PRIO], tonumber(a[b + F_SECS]), a[b + F_BUCKET]
  local d = P .. 'd:' .. m
  add4(sums, d, dd .. ':r', k, p, 1)
  add4(sums, d, dd .. ':s', k, p, secs)
  -- Histograms: by day (for ranges that cut a month) and by month, one key per grouping.
  -- Days have keys of their own, so a range reads only its days (or the month's others).
  local hd, hm = P .. 'hd:' .. day .. ':', P .. 'hm:' .. m .. ':'
  add(sums, hd .. 'a', b, 1)
  add(sums, hd .. 'k', k .. ':' .. b, 1)
  add(sums, hd .. 'p', p .. ':' .. b, 1)
  add(sums, hd .. 'kp', k .. ':' .. p .. ':' .. b, 1)
  add(sums, hm .. 'a', b, 1)
  add(sums, hm .. 'a', 'n', 1)
  add(sums, hm .. 'a', 's', secs)
  for _, g in ipairs({ { 'k', k }, { 'p', p }, { 'kp', k .. ':' .. p } }) do
    add(sums, hm .. g[1], g[2] .. ':' .. b, 1)
    add(sums, hm .. g[1], g[2] .. ':n', 1)
    add(sums, hm .. g[1], g[2] .. ':s', secs)
  end
  if agent ~= '' then
    local ad, adm = P .. 'ad:' .. day, P .. 'ad:' .. m
    add(sums, ad, agent .. ':n', 1)
    add(sums, ad, agent .. ':s', secs)
    add(sums, adm, agent .. ':n', 1)
    add(sums, adm, agent .. ':s', secs)
    add(zsums, P .. 'lb:' .. m, agent, 1)
  end
end

-- Reference data: the newest seq wins, so a late duplicate cannot undo a rename. The seqs are
-- recorded at the end with the versions (refs), so a failed call leaves them untouched.
local function apply_reference(P, a, b, refs)
  local key = a[b + F_TYPE] .. ':' .. a[b + F_REF]
  local last = refs[key]
  if last == nil then
    last = tonumber(redis.call('HGET', P .. 'refseq', key) or '0')
  end
  if tonumber(a[b + F_SEQ]) <= last then
    return DUP
  end
  refs[key] = tonumber(a[b + F_SEQ])
  refs[#refs + 1] = key
  if a[b + F_TYPE] == TENANT then
    push('HSET', P .. 'tenant', 'name', a[b + F_NAME], 'time_zone', a[b + F_TZ])
  elseif a[b + F_TYPE] == CATEGORY then
    push('HSET', P .. 'cats', a[b + F_REF], a[b + F_NAME])
  elseif a[b + F_TYPE] == AGENT then
    push('HSET', P .. 'agents', a[b + F_REF], a[b + F_NAME])
  end
  return APPLIED
end

-- Runs cmd key unpack(list) in chunks small enough for Lua's stack; HMGET answers are joined.
local CHUNK = 4000
local function chunked(cmd, key, list, step)
  local out = {}
  for i = 1, #list, CHUNK do
    local last = math.min(i + CHUNK - 1, #list)
    local r = redis.call(cmd, key, unpack(list, i, last))
    if step then
      for j = 1, #r do
        out[#out + 1] = r[j]
      end
    end
  end
  return out
end

-- Writes the summed increments: per key one HMGET of the fields, one HSET of the new values.
local function write_sums(sums)
  for key, fields in pairs(sums) do
    local names, deltas = {}, {}
    for field, by in pairs(fields) do
      if by ~= 0 then
        names[#names + 1] = field
        deltas[#deltas + 1] = by
      end
    end
    if #names > 0 then
      local old = chunked('HMGET', key, names, true)
      local pairs_ = {}
      for i, name in ipairs(names) do
        pairs_[#pairs_ + 1] = name
        pairs_[#pairs_ + 1] = string.format('%.0f', (tonumber(old[i]) or 0) + deltas[i])
      end
      chunked('HSET', key, pairs_, false)
    end
  end
end

local function apply(keys, args)
  local tag = keys[1]:sub(1, #keys[1] - 3) -- "{t:<tenant>}:" from "{t:<tenant>}:gen"
  local gen = redis.call('GET', keys[1]) or '1'
  local P = tag .. gen .. ':'
  local now, n, nf = args[1], tonumber(args[2]), tonumber(args[3])
  if nf ~= NFIELDS or #args ~= 3 + n * nf then
    return redis.error_reply('tally_apply: expected ' .. NFIELDS .. ' fields per event')
  end
  ops = {}
  local sums, zsums, versions, out = {}, {}, {}, {}
  local applied, as_of = 0, 0
  local any_parked = redis.call('EXISTS', tag .. 'parked') == 1
  -- The batch's complaints' last versions, in one call.
  local ids, seen = {}, {}
  for i = 1, n do
    local base = 3 + (i - 1) * nf
    local t, id = args[base + F_TYPE], args[base + F_ID]
    if (t == CREATED or t == ASSIGNED or t == STATUS) and not seen[id] then
      seen[id] = true
      ids[#ids + 1] = id
    end
  end
  if #ids > 0 then
    local got = chunked('HMGET', P .. 'cv', ids, true)
    for i, id in ipairs(ids) do
      versions[id] = tonumber(got[i]) or 0
    end
  end
  local dirty, marked = {}, {} -- complaints whose version this call moves
  local refs = {} -- reference seqs this call moves: refs[key] = seq, and the keys as a list
  for i = 1, n do
    local a, b = args, 3 + (i - 1) * nf -- the event's fields are a[b + F_...]
    local status
    local t = a[b + F_TYPE]
    if not valid(a, b) then
      status = INVALID
    elseif t == TENANT or t == CATEGORY or t == AGENT then
      status = apply_reference(P, a, b, refs)
    elseif any_parked and redis.call('HEXISTS', tag .. 'parked', a[b + F_ID]) == 1 then
      status = PARKED
    else
      local id, v = a[b + F_ID], tonumber(a[b + F_VERSION])
      local last = versions[id]
      if v <= last then
        status = DUP
      elseif v > last + 1 then
        status = GAP
      else
        if t == CREATED then
          apply_created(P, sums, zsums, a, b)
        elseif t == ASSIGNED then
          apply_assigned(P, sums, a, b)
        else
          apply_status(P, sums, zsums, a, b)
        end
        if not marked[id] then
          marked[id] = true
          dirty[#dirty + 1] = id
        end
        versions[id] = v
        status = APPLIED
      end
    end
    if status == APPLIED then
      applied = applied + 1
      local rec = tonumber(a[b + F_RECORDED])
      if rec > as_of then
        as_of = rec
      end
    end
    out[i] = status
  end
  -- Every key to be written, with the type it must have.
  local want = { [P .. 'cv'] = 'hash', [P .. 'refseq'] = 'hash', [P .. 'fresh'] = 'hash' }
  for _, o in ipairs(ops) do
    want[o[2]] = (o[1] == 'ZADD' or o[1] == 'ZREM') and 'zset' or 'hash'
  end
  for key in pairs(sums) do
    want[key] = 'hash'
  end
  for key in pairs(zsums) do
    want[key] = 'zset'
  end
  for key, type_ in pairs(want) do
    local t = redis.call('TYPE', key).ok
    if t ~= 'none' and t ~= type_ then
      return redis.error_reply('WRONGTYPE tally_apply: ' .. key .. ' is a ' .. t .. ', not a '
        .. type_)
    end
  end
  for _, o in ipairs(ops) do
    redis.call(unpack(o))
  end
  write_sums(sums)
  for key, members in pairs(zsums) do
    for member, by in pairs(members) do
      redis.call('ZINCRBY', key, by, member)
    end
  end
  if #dirty > 0 then
    local kv = {}
    for _, id in ipairs(dirty) do
      kv[#kv + 1] = id
      kv[#kv + 1] = versions[id]
    end
    chunked('HSET', P .. 'cv', kv, false)
  end
  for _, key in ipairs(refs) do
    redis.call('HSET', P .. 'refseq', key, string.format('%.0f', refs[key]))
  end
  if applied > 0 then
    local fresh = P .. 'fresh'
    local old = tonumber(redis.call('HGET', fresh, 'as_of_ms') or '0')
    if as_of > old then
      redis.call('HSET', fresh, 'as_of_ms', as_of)
    end
    redis.call('HSET', fresh, 'applied_ms', now)
    redis.call('HINCRBY', fresh, 'events', applied)
  end
  return out
end

redis.register_function('tally_apply', apply)
