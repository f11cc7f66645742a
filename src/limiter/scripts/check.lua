--[[ check.lua: every limit that applies to one request, checked atomically, all or nothing:
request counts, usage units (reservations, recorded in flight), a concurrency slot, shadow limits
and quota warnings.

The Rust models in src/limiter/{fixed_window,sliding_window,token_bucket,gcra,model,concurrency,
reservations}.rs
are the specification of this script; tests/limiter_scripts.rs holds the two equal on a real Redis.

KEYS[1]      the subject's override key   {ns}:ratelimit:v1:{<subject_hash>}:override
KEYS[1+i]    state key of the i-th ARGV limit (tier limits, then route limits)
             {ns}:ratelimit:v1:{<subject_hash>}:<limit id>
KEYS[2+n]    only with a slot (ARGV[8] > 0): the route's lease set (a sorted set: member = lease
             id, score = deadline, Unix ms)   {ns}:ratelimit:v1:{<subject_hash>}:lease:<route>

ARGV[1]  now_ms   "" (production: the time is Redis TIME, so isolates on every machine agree).
                  A positive integer replaces TIME; ONLY the property tests pass one. States are
                  written with an absolute expiry (PXAT), so a given time must not be earlier than
                  the server clock.
ARGV[2]  mode     "consume" (charge every limit if all allow) | "peek" (decide, write nothing)
ARGV[3]  cost     units an override's limits (request limits) take, integer >= 1
ARGV[4]  prefix   state key prefix of the subject ({ns}:ratelimit:v1:{<subject_hash>}:); an
                  override's limits live at prefix .. id, warning marks at prefix .. "warn:" ..
                  id .. ":" .. ppm, the reservations in flight at prefix ..
                  "usage:reservations" (":" never occurs in a limit id)
ARGV[5]  n_tier   number of tier limits
ARGV[6]  n_route  number of route limits
ARGV[7]  subject  the subject hash, for quota-warning messages
ARGV[8]  slot_limit   concurrency slots, 0 = the route has none (then ARGV[9..12] are ignored)
ARGV[9]  lease_ms     lease time, >= 1
ARGV[10] lease_id     this request's lease id, unique per request; "" in peek mode
ARGV[11] slot_mode    "enforce" | "shadow"
ARGV[12] slot_id      the slot's name (route-<name>-concurrency)
ARGV[13] res_id       this request's reservation id ([A-Za-z0-9_-]{1,64}, unique per request);
                      "" when nothing is reserved (no usage rule, or peek mode: ARGV[14..15]
                      are then ignored)
ARGV[14] res_unit     the reserved unit (the route's usage unit)
ARGV[15] res_units    units reserved (the route's reserve), >= 1
ARGV[16+8(i-1) .. 23+8(i-1)]   limit i: id, algorithm (fixed_window | sliding_window |
                  token_bucket | gcra), limit (units per window, >= 1), window_ms (>= 1),
                  cost (units this request takes from it, >= 1: the route's cost for requests,
                  its reservation for its usage unit), unit, mode ("enforce" | "shadow"),
                  warn ("" or comma-separated parts per million, 1..1000000, ascending)

Override (KEYS[1], JSON, optional): {"tier":"PRO","limits":[{"id","alg","limit","window_ms"}]}
replaces the TIER limits (route limits stay); its limits are enforced request limits costing
ARGV[3], without warnings. It is validated by the rules of src/limiter/overrides.rs (tier
[A-Za-z0-9_-]{1,64}; ids [A-Za-z0-9_.-]{1,64}, unique, none equal to a route limit id of another
algorithm or window; at most 16 limits; whole numbers, limit <= 2^32-1, window_ms <= 2^40,
limit * window_ms <= 2^52); an invalid one is ignored and reported (status 2).

Limits sharing an id share their key (the policy requires them to agree on algorithm, window,
unit and mode): they are checked once, in the place of the first, with the smaller limit.

Cluster: every key, including the override limits', warning marks' and reservations' keys
derived here from ARGV[4] (not in KEYS), carries the subject's hash tag {<subject_hash>}: all
live in one slot.

Phase 1 reads every state and decides each limit at its own cost, and counts the live leases
(deadline > now) of the slot. Only ENFORCED limits refuse: if one says impossible (cost > limit)
or denies, or an enforced slot is full (live >= slot_limit), nothing is written anywhere, shadow
limits included: a denial consumes nothing. Phase 2 (consume mode, all enforced allowed) writes
every enforced limit's new state, and each SHADOW limit's that allows by itself (as if it were
enforced and the request went through); a shadow limit that would refuse is not charged, so it
counts exactly what it would have let through. States are written with SET ... PXAT <expiry>,
the moment from which the state decides exactly as no state would; no key is ever written
without a TTL. The slot: expired leases are removed, the lease added with deadline now +
lease_ms (an enforced slot always fits here; a shadow slot only when it fits), and the set's
expiry moved to its latest deadline.

Reservations in flight (consume mode, ARGV[13] given): when phase 2 wrote at least one limit of
res_unit (so a settlement will follow), the reservation is recorded in the sorted set prefix ..
"usage:reservations": member res_id .. ":" .. res_units .. ":" .. res_unit, score = its deadline:
the latest expiry among the states written for limits of res_unit (from then on its units weigh
on none of them, and a refund would change nothing), capped at the deadline of the lease this
check added. Expired members (score <= now) are removed first, and the set's expiry moved to its
latest deadline. settle.lua removes the member; a lost settlement stops counting at the deadline.

Shadow: a shadow limit or slot whose own verdict is not "allowed" is listed in the reply, in
consume and peek mode alike, whatever the outcome.

Quota warnings: for each limit written with warn fractions, used = limit - remaining before and
after the charge; a fraction f whose threshold ceil(f * limit) (at least 1) lies in
(used_before, used_after] is crossed. A crossing publishes once per window per (subject, limit,
fraction): unless the warning mark holds a time after now, the mark is set to the window's end
(fixed/sliding window: the aligned window's end; bucket/GCRA: when the limit is whole again) with
PXAT that time, and a JSON message {"subject","limit","unit","mode","used","quota","window_ms",
"fraction","time"} is PUBLISHed on the channel system:quota_warning. The script runs atomically,
so concurrent checks in any number of isolates publish each crossing exactly once. (The mark's
value, not only its TTL, decides, so a given now_ms behaves like TIME.)

Cost: one EVALSHA per check (one billed command), however many limits apply.

Numbers: Lua numbers are doubles. Limits are bounded (window <= 2^40 ms, limit * window <= 2^52)
so every intermediate value stays an exact integer below 2^53; divisions go through idiv, which
corrects the rounding of a / b, and numbers are formatted with %.0f (never %.14g).

Reply (flat; integers and strings only):
  [1] now_ms   [2] outcome: 1 allowed, 0 denied, -1 impossible
  [3] violated: 1-based index of the violated limit in the list below, n+1 for the slot, 0 when
      allowed
  [4] retry_after_ms (0 unless denied; a full slot: until its next deadline, at most 1000)
  [5] override tier name, "" when none applied
  [6] override status: 0 none, 1 applied, 2 present but invalid (ignored)   [7] n, the limit count
  then per limit (override or tier limits first, then route limits), 10 fields:
      id, algorithm, limit, window_ms, remaining, reset_ms, next_ms, unit, mode, charged
      (remaining / reset_ms / next_ms after charging when the limit was written, else
      untouched; charged = its cost when written, else 0)
  then the slot, 7 fields: slot_id ("" without a slot), slot_limit, in_flight (live leases
      after the check), lease_ms, slot_mode, acquired (1 when this check added its lease, else
      0), reset_ms (by when one more slot is free at the latest: now when one is)
  then the shadow list: k, then k ids (shadow limits in order, then a shadow slot)
  then the warnings published: w, then w × (limit id, ppm, used)
]]

local MAX_EXACT = 9007199254740992 -- 2^53
local MAX_WINDOW = 1099511627776 -- 2^40
local MAX_LIMIT_TIMES_WINDOW = 4503599627370496 -- 2^52
local MAX_U32 = 4294967295
local MAX_OVERRIDE_LIMITS = 16

-- floor(a / b) for integers 0 <= a < 2^53 and b >= 1, exact despite double rounding.
local function idiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

local function ceil_div(a, b)
  return idiv(a + b - 1, b)
end

local function fmt(n)
  return string.format('%.0f', n)
end

-- A stored state field: 1 to 16 digits, at most 2^53.
local function field(s)
  if s == nil or #s > 16 then return nil end
  local n = tonumber(s)
  if n == nil or n > MAX_EXACT then return nil end
  return n
end

local function whole(x, max)
  return type(x) == 'number' and x >= 1 and x <= max and x == math.floor(x)
end

-- A verdict: remaining after the decision, reset = earliest(limit), next = earliest(remaining+1).
local function verdict(outcome, retry, remaining, l, earliest)
  remaining = math.min(remaining, l)
  return { outcome = outcome, retry = retry, remaining = remaining,
           reset = earliest(l), next = earliest(math.min(remaining + 1, l)) }
end

-- Each algorithm: (raw state or nil, now, limit, window, cost) -> verdict, new state, expiry.
-- outcome: 1 allowed, 0 denied, -1 impossible; new state only when allowed.

local function fixed_window(raw, now, l, w, cost)
  local start = idiv(now, w) * w
  local stop = start + w
  local count = 0
  if raw then
    local a, b = string.match(raw, '^fw:(%d+):(%d+)$')
    a, b = field(a), field(b)
    if a and b and a == start then count = b end
  end
  local function earliest_after(c)
    return function(need)
      if c + need <= l then return now end
      return stop
    end
  end
  if cost > l then
    return verdict(-1, 0, math.max(l - count, 0), l, earliest_after(count))
  end
  if count + cost <= l then
    local c = count + cost
    return verdict(1, 0, l - c, l, earliest_after(c)), 'fw:' .. fmt(start) .. ':' .. fmt(c), stop
  end
  local retry = earliest_after(count)(cost) - now
  return verdict(0, retry, math.max(l - count, 0), l, earliest_after(count))
end

local function sliding_window(raw, now, l, w, cost)
  local start = idiv(now, w) * w
  local elapsed = now - start
  local cur, prev = 0, 0
  if raw then
    local a, b, c = string.match(raw, '^sw:(%d+):(%d+):(%d+)$')
    a, b, c = field(a), field(b), field(c)
    if a and b and c then
      if a == start then
        cur, prev = math.min(b, l), math.min(c, l)
      elseif a + w == start then
        cur, prev = 0, math.min(b, l)
      end
    end
  end
  local function earliest_after(cu)
    return function(need)
      if cu + need <= l then
        local budget = l - need - cu
        if prev == 0 then return now end
        local k = idiv((budget + 1) * w - 1, prev)
        if k >= w - elapsed then return now end
        if k >= 1 then return start + w - k end
      end
      if cu == 0 then return start + w end
      local k = idiv((l - need + 1) * w - 1, cu)
      if k >= w then return start + w end
      if k >= 1 then return start + 2 * w - k end
      return start + 2 * w
    end
  end
  local used = idiv(prev * (w - elapsed), w) + cur
  if cost > l then
    return verdict(-1, 0, math.max(l - used, 0), l, earliest_after(cur))
  end
  if used + cost <= l then
    local c = cur + cost
    local state = 'sw:' .. fmt(start) .. ':' .. fmt(c) .. ':' .. fmt(prev)
    return verdict(1, 0, l - used - cost, l, earliest_after(c)), state, start + 2 * w
  end
  local retry = earliest_after(cur)(cost) - now
  return verdict(0, retry, math.max(l - used, 0), l, earliest_after(cur))
end

local function token_bucket(raw, now, l, w, cost)
  local cap = l * w
  local level = cap
  if raw then
    local a, b = string.match(raw, '^tb:(%d+):(%d+)$')
    a, b = field(a), field(b)
    if a and b then
      local elapsed = math.max(now - b, 0)
      if elapsed < w then level = math.min(math.min(a, cap) + elapsed * l, cap) end
    end
  end
  local function earliest_after(lv)
    return function(need)
      local wanted = need * w
      if lv >= wanted then return now end
      return now + ceil_div(wanted - lv, l)
    end
  end
  if cost > l then
    return verdict(-1, 0, idiv(level, w), l, earliest_after(level))
  end
  local wanted = cost * w
  if level >= wanted then
    local lv = level - wanted
    local state = 'tb:' .. fmt(lv) .. ':' .. fmt(now)
    return verdict(1, 0, idiv(lv, w), l, earliest_after(lv)), state, now + ceil_div(cap - lv, l)
  end
  local retry = earliest_after(level)(cost) - now
  return verdict(0, retry, idiv(level, w), l, earliest_after(level))
end

local function gcra(raw, now, l, w, cost)
  local tat_ms, tat_rem = now, 0
  if raw then
    local a, b = string.match(raw, '^gc:(%d+):(%d+)$')
    a, b = field(a), field(b)
    if a and b then
      local carry = idiv(b, l)
      local ms, rem = a + carry, b - carry * l
      if ms >= now then tat_ms, tat_rem = ms, rem end
    end
  end
  local horizon = now + w
  -- The TAT (ms, rem) plus n emission intervals of w / l ms, exactly.
  local function plus(ms, rem, n)
    local p = n * w
    local q = idiv(p, l)
    local r = rem + (p - q * l)
    if r >= l then return ms + q + 1, r - l end
    return ms + q, r
  end
  local function remaining(ms, rem)
    if ms > horizon then return 0 end
    local slack = (horizon - ms) * l - rem
    if slack <= 0 then return 0 end
    return math.min(idiv(slack, w), l)
  end
  local function earliest_after(ms, rem)
    return function(need)
      local m, r = plus(ms, rem, need)
      if r > 0 then m = m + 1 end
      return math.max(m - w, now)
    end
  end
  if cost > l then
    return verdict(-1, 0, remaining(tat_ms, tat_rem), l, earliest_after(tat_ms, tat_rem))
  end
  local ms, rem = plus(tat_ms, tat_rem, cost)
  if ms < horizon or (ms == horizon and rem == 0) then
    local expiry = ms
    if rem > 0 then expiry = ms + 1 end
    local state = 'gc:' .. fmt(ms) .. ':' .. fmt(rem)
    return verdict(1, 0, remaining(ms, rem), l, earliest_after(ms, rem)), state, expiry
  end
  local retry = earliest_after(tat_ms, tat_rem)(cost) - now
  return verdict(0, retry, remaining(tat_ms, tat_rem), l, earliest_after(tat_ms, tat_rem))
end

local ALGORITHMS = {
  fixed_window = fixed_window,
  sliding_window = sliding_window,
  token_bucket = token_bucket,
  gcra = gcra,
}

local RETRY_HINT_MS = 1000
local WHOLE_PPM = 1000000
local CHANNEL = 'system:quota_warning'

local function bad(what)
  return redis.error_reply('ERR tollgate check.lua: bad ' .. what)
end

-- Arguments.
local now
local given = tonumber(ARGV[1])
if given and given > 0 then
  if not whole(given, MAX_EXACT) then return bad('now_ms') end
  now = given
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end
local mode = ARGV[2]
if mode ~= 'consume' and mode ~= 'peek' then return bad('mode') end
local cost = tonumber(ARGV[3])
if not whole(cost, MAX_U32) then return bad('cost') end
local prefix = ARGV[4]
local n_tier, n_route = tonumber(ARGV[5]), tonumber(ARGV[6])
if not (n_tier and n_route and n_tier >= 0 and n_route >= 0) then return bad('limit counts') end
local subject = ARGV[7]
local slot_limit = tonumber(ARGV[8])
if slot_limit ~= 0 and not whole(slot_limit, MAX_U32) then return bad('slot limit') end
local has_slot = slot_limit > 0
local lease_ms, lease_id, slot_mode, slot_id = tonumber(ARGV[9]), ARGV[10], ARGV[11], ARGV[12]
if has_slot then
  if not whole(lease_ms, MAX_WINDOW) then return bad('lease_ms') end
  if slot_mode ~= 'enforce' and slot_mode ~= 'shadow' then return bad('slot mode') end
  if slot_id == '' then return bad('slot id') end
  if mode == 'consume' and lease_id == '' then return bad('lease id') end
end
local res_id, res_unit, res_units = ARGV[13], ARGV[14], tonumber(ARGV[15])
local reserving = mode == 'consume' and res_id ~= nil and res_id ~= ''
if reserving then
  if #res_id > 64 or not string.find(res_id, '^[%w_%-]+$') then return bad('reservation id') end
  if res_unit == nil or not string.find(res_unit, '^[%l][%l%d_%-]*$') then return bad('reservation unit') end
  if not whole(res_units, MAX_U32) then return bad('reservation units') end
end
local FIXED, PER = 15, 8
if #ARGV ~= FIXED + PER * (n_tier + n_route) or #KEYS ~= 1 + n_tier + n_route + (has_slot and 1 or 0) then
  return bad('number of KEYS or ARGV')
end

-- "800000,1000000" -> { 800000, 1000000 }; nil when malformed.
local function warn_list(text)
  local out = {}
  if text == '' then return out end
  for part in string.gmatch(text .. ',', '([^,]*),') do
    local n = tonumber(part)
    if not whole(n, WHOLE_PPM) then return nil end
    table.insert(out, n)
  end
  return out
end

local function argv_limit(i)
  local base = FIXED + PER * (i - 1)
  local lim = { id = ARGV[base + 1], alg = ARGV[base + 2], limit = tonumber(ARGV[base + 3]),
                window = tonumber(ARGV[base + 4]), cost = tonumber(ARGV[base + 5]), unit = ARGV[base + 6],
                mode = ARGV[base + 7], warn = warn_list(ARGV[base + 8]), key = KEYS[1 + i] }
  if ALGORITHMS[lim.alg] == nil or not whole(lim.limit, MAX_U32) or not whole(lim.window, MAX_WINDOW)
      or lim.limit * lim.window > MAX_LIMIT_TIMES_WINDOW or not whole(lim.cost, MAX_U32)
      or lim.unit == '' or (lim.mode ~= 'enforce' and lim.mode ~= 'shadow') or lim.warn == nil then
    return nil
  end
  return lim
end

local tier_limits, route_limits, argv_seen = {}, {}, {}
for i = 1, n_tier + n_route do
  local lim = argv_limit(i)
  if lim == nil then return bad('limit ' .. i) end
  local other = argv_seen[lim.id]
  if other and (other.alg ~= lim.alg or other.window ~= lim.window) then return bad('shared limit id ' .. i) end
  argv_seen[lim.id] = lim
  if i <= n_tier then table.insert(tier_limits, lim) else table.insert(route_limits, lim) end
end

-- The override, validated like src/limiter/overrides.rs; nil when invalid.
local function parse_override(doc)
  if type(doc) ~= 'table' then return nil end
  local tier = doc.tier
  if type(tier) ~= 'string' or #tier > 64 or not string.find(tier, '^[%w_%-]+$') then return nil end
  local items = doc.limits
  if type(items) ~= 'table' then return nil end
  local n = 0
  for _ in pairs(items) do n = n + 1 end
  if n > MAX_OVERRIDE_LIMITS then return nil end
  local routes = {}
  for _, r in ipairs(route_limits) do routes[r.id] = r end
  local seen = {}
  local limits = {}
  for i = 1, n do
    local item = items[i]
    if type(item) ~= 'table' then return nil end
    local id, alg = item.id, item.alg
    if type(id) ~= 'string' or #id > 64 or not string.find(id, '^[%w_%.%-]+$') or seen[id] then return nil end
    if type(alg) ~= 'string' or ALGORITHMS[alg] == nil then return nil end
    if not whole(item.limit, MAX_U32) or not whole(item.window_ms, MAX_WINDOW)
        or item.limit * item.window_ms > MAX_LIMIT_TIMES_WINDOW then
      return nil
    end
    local r = routes[id]
    if r and (r.alg ~= alg or r.window ~= item.window_ms) then return nil end
    seen[id] = true
    table.insert(limits, { id = id, alg = alg, limit = item.limit, window = item.window_ms, key = prefix .. id,
                           cost = cost, unit = 'requests', mode = 'enforce', warn = {} })
  end
  return { tier = tier, limits = limits }
end

local tier_name, override_status = '', 0
local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'string' then
  local ok, doc = pcall(cjson.decode, stored)
  local parsed = ok and parse_override(doc) or nil
  if parsed then
    tier_name, override_status, tier_limits = parsed.tier, 1, parsed.limits
  else
    override_status = 2
  end
elseif type(stored) == 'table' and stored.err then
  override_status = 2
end

-- Limits sharing an id share one key: one entry, in the first one's place, with the smaller limit.
local limits, position = {}, {}
local function add(lim)
  local j = position[lim.id]
  if j == nil then
    table.insert(limits, lim)
    position[lim.id] = #limits
  elseif lim.limit < limits[j].limit then
    limits[j] = lim
  end
end
for _, lim in ipairs(tier_limits) do add(lim) end
for _, lim in ipairs(route_limits) do add(lim) end

-- Phase 1: read and decide every limit, then the slot; only enforced ones refuse.
local impossible, denied, denied_retry = 0, 0, 0
for i, lim in ipairs(limits) do
  local raw = redis.pcall('GET', lim.key)
  if type(raw) ~= 'string' then raw = nil end
  lim.raw = raw
  lim.shadow = lim.mode == 'shadow'
  lim.verdict, lim.state, lim.expiry = ALGORITHMS[lim.alg](raw, now, lim.limit, lim.window, lim.cost)
  if not lim.shadow then
    if lim.verdict.outcome == -1 and impossible == 0 then impossible = i end
    if lim.verdict.outcome == 0 and (denied == 0 or lim.verdict.retry > denied_retry) then
      denied, denied_retry = i, lim.verdict.retry
    end
  end
end

local slot_key = KEYS[#KEYS]
local deadlines, live, fits = {}, 0, true
if has_slot then
  local items = redis.pcall('ZRANGEBYSCORE', slot_key, '(' .. fmt(now), '+inf', 'WITHSCORES')
  if type(items) == 'table' and not items.err then
    for j = 2, #items, 2 do table.insert(deadlines, tonumber(items[j])) end
  end
  live = #deadlines
  fits = live < slot_limit
  if not fits and slot_mode == 'enforce' then
    local retry = math.min(math.max(deadlines[live - slot_limit + 1] - now, 1), RETRY_HINT_MS)
    if denied == 0 or retry > denied_retry then denied, denied_retry = #limits + 1, retry end
  end
end
local commit = impossible == 0 and denied == 0 and mode == 'consume'

-- Phase 2: write, only when every enforced limit allowed and charging.
for _, lim in ipairs(limits) do
  lim.written = commit and (not lim.shadow or lim.verdict.outcome == 1)
  if lim.written then
    redis.call('SET', lim.key, lim.state, 'PXAT', fmt(lim.expiry))
  end
end
local acquired = commit and has_slot and fits
local in_flight = live
if acquired then
  local deadline = now + lease_ms
  redis.call('ZREMRANGEBYSCORE', slot_key, '-inf', fmt(now))
  redis.call('ZADD', slot_key, fmt(deadline), lease_id)
  local at = #deadlines + 1
  while at > 1 and deadlines[at - 1] > deadline do at = at - 1 end
  table.insert(deadlines, at, deadline)
  redis.call('PEXPIREAT', slot_key, fmt(deadlines[#deadlines]))
  in_flight = live + 1
end

-- The reservation in flight, when a limit of its unit was charged.
if reserving then
  local res_until = nil
  for _, lim in ipairs(limits) do
    if lim.written and lim.unit == res_unit and (res_until == nil or lim.expiry > res_until) then
      res_until = lim.expiry
    end
  end
  if res_until then
    if acquired then res_until = math.min(res_until, now + lease_ms) end
    local res_key = prefix .. 'usage:reservations'
    redis.call('ZREMRANGEBYSCORE', res_key, '-inf', fmt(now))
    redis.call('ZADD', res_key, fmt(res_until), res_id .. ':' .. fmt(res_units) .. ':' .. res_unit)
    local latest = redis.call('ZRANGE', res_key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', res_key, fmt(tonumber(latest[2])))
  end
end

-- Quota warnings of the limits written.
local warnings = {}
local function window_end(lim)
  if lim.alg == 'fixed_window' or lim.alg == 'sliding_window' then
    return idiv(now, lim.window) * lim.window + lim.window
  end
  return math.max(lim.verdict.reset, now + 1)
end
for _, lim in ipairs(limits) do
  if lim.written and #lim.warn > 0 then
    local l = lim.limit
    local before = ALGORITHMS[lim.alg](lim.raw, now, l, lim.window, 0)
    local used_before = l - math.min(before.remaining, l)
    local used_after = l - math.min(lim.verdict.remaining, l)
    for _, ppm in ipairs(lim.warn) do
      local threshold = math.max(ceil_div(l * ppm, WHOLE_PPM), 1)
      if used_before < threshold and threshold <= used_after then
        local mark = prefix .. 'warn:' .. lim.id .. ':' .. fmt(ppm)
        local held = redis.pcall('GET', mark)
        held = type(held) == 'string' and tonumber(held) or nil
        if not (held and held > now) then
          local until_ms = window_end(lim)
          redis.call('SET', mark, fmt(until_ms), 'PXAT', fmt(until_ms))
          redis.call('PUBLISH', CHANNEL, cjson.encode({
            subject = subject, limit = lim.id, unit = lim.unit, mode = lim.mode, used = used_after,
            quota = l, window_ms = lim.window, fraction = ppm / WHOLE_PPM, time = now }))
          table.insert(warnings, { lim.id, ppm, used_after })
        end
      end
    end
  end
end

local outcome, violated, retry = 1, 0, 0
if impossible > 0 then
  outcome, violated = -1, impossible
elseif denied > 0 then
  outcome, violated, retry = 0, denied, denied_retry
end
local reply = { now, outcome, violated, retry, tier_name, override_status, #limits }
local shadow_denied = {}
for _, lim in ipairs(limits) do
  local shown = lim.verdict
  if not lim.written then shown = ALGORITHMS[lim.alg](lim.raw, now, lim.limit, lim.window, 0) end
  if lim.shadow and lim.verdict.outcome ~= 1 then table.insert(shadow_denied, lim.id) end
  table.insert(reply, lim.id)
  table.insert(reply, lim.alg)
  table.insert(reply, lim.limit)
  table.insert(reply, lim.window)
  table.insert(reply, shown.remaining)
  table.insert(reply, shown.reset)
  table.insert(reply, shown.next)
  table.insert(reply, lim.unit)
  table.insert(reply, lim.mode)
  table.insert(reply, lim.written and lim.cost or 0)
end
if has_slot then
  if not fits and slot_mode == 'shadow' then table.insert(shadow_denied, slot_id) end
  local free_at = now
  if #deadlines >= slot_limit then free_at = deadlines[#deadlines - slot_limit + 1] end
  for _, v in ipairs({ slot_id, slot_limit, in_flight, lease_ms, slot_mode, acquired and 1 or 0, free_at }) do
    table.insert(reply, v)
  end
else
  for _, v in ipairs({ '', 0, 0, 0, 'enforce', 0, 0 }) do table.insert(reply, v) end
end
table.insert(reply, #shadow_denied)
for _, id in ipairs(shadow_denied) do table.insert(reply, id) end
table.insert(reply, #warnings)
for _, w in ipairs(warnings) do
  table.insert(reply, w[1])
  table.insert(reply, w[2])
  table.insert(reply, w[3])
end
return reply
