--[[ check.lua: every limit that applies to one request, checked atomically, all or nothing.

The Rust models in src/limiter/{fixed_window,sliding_window,token_bucket,gcra,model}.rs are the
specification of this script; tests/limiter_scripts.rs holds the two equal on a real Redis.

KEYS[1]      the subject's override key   {ns}:ratelimit:v1:{<subject_hash>}:override
KEYS[1+i]    state key of the i-th ARGV limit (tier limits, then route limits)
             {ns}:ratelimit:v1:{<subject_hash>}:<limit id>

ARGV[1]  now_ms   "" (production: the time is Redis TIME, so isolates on every machine agree).
                  A positive integer replaces TIME; ONLY the property tests pass one. States are
                  written with an absolute expiry (PXAT), so a given time must not be earlier than
                  the server clock.
ARGV[2]  mode     "consume" (charge every limit if all allow) | "peek" (decide, write nothing)
ARGV[3]  cost     units the request takes from every limit, integer >= 1
ARGV[4]  prefix   state key prefix of the subject ({ns}:ratelimit:v1:{<subject_hash>}:); an
                  override's limits live at prefix .. id
ARGV[5]  n_tier   number of tier limits
ARGV[6]  n_route  number of route limits
ARGV[7+4(i-1) .. 10+4(i-1)]   limit i: id, algorithm (fixed_window | sliding_window |
                  token_bucket | gcra), limit (units per window, >= 1), window_ms (>= 1)

Override (KEYS[1], JSON, optional): {"tier":"PRO","limits":[{"id","alg","limit","window_ms"}]}
replaces the TIER limits (route limits stay). It is validated by the rules of
src/limiter/overrides.rs (tier [A-Za-z0-9_-]{1,64}; ids [A-Za-z0-9_.-]{1,64}, unique, none equal
to a route limit id of another algorithm or window; at most 16 limits; whole numbers,
limit <= 2^32-1, window_ms <= 2^40, limit * window_ms <= 2^52); an invalid one is ignored and
reported (status 2).

Limits sharing an id share their key (the policy requires them to agree on algorithm and
window): they are checked once, in the place of the first, with the smaller limit.

Cluster: every key, including the override limits' keys derived here from ARGV[4] (which the
caller cannot know in advance, so they are not in KEYS), carries the subject's hash tag
{<subject_hash>}: all live in one slot.

Phase 1 reads every state and decides each limit. If any limit says impossible (cost > limit)
or denies, nothing is written: a denial consumes nothing from any limit. Phase 2 (consume mode,
all allowed) writes every new state with SET ... PXAT <expiry>, the moment from which the state
decides exactly as no state would; no key is ever written without a TTL.

Cost: one EVALSHA per check (one billed command), however many limits apply.

Numbers: Lua numbers are doubles. Limits are bounded (window <= 2^40 ms, limit * window <= 2^52)
so every intermediate value stays an exact integer below 2^53; divisions go through idiv, which
corrects the rounding of a / b, and numbers are formatted with %.0f (never %.14g).

Reply (flat; integers and strings only):
  [1] now_ms   [2] outcome: 1 allowed, 0 denied, -1 impossible
  [3] violated: 1-based index of the violated limit in the list below, 0 when allowed
  [4] retry_after_ms (0 unless denied)   [5] override tier name, "" when none applied
  [6] override status: 0 none, 1 applied, 2 present but invalid (ignored)   [7] n, the limit count
  then per limit (override or tier limits first, then route limits), 7 fields:
      id, algorithm, limit, window_ms, remaining, reset_ms, next_ms
  remaining / reset_ms / next_ms are after charging when the check consumed, else untouched.
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
if #ARGV ~= 6 + 4 * (n_tier + n_route) or #KEYS ~= 1 + n_tier + n_route then
  return bad('number of KEYS or ARGV')
end

local function argv_limit(i)
  local base = 6 + 4 * (i - 1)
  local lim = { id = ARGV[base + 1], alg = ARGV[base + 2], limit = tonumber(ARGV[base + 3]),
                window = tonumber(ARGV[base + 4]), key = KEYS[1 + i] }
  if ALGORITHMS[lim.alg] == nil or not whole(lim.limit, MAX_U32) or not whole(lim.window, MAX_WINDOW)
      or lim.limit * lim.window > MAX_LIMIT_TIMES_WINDOW then
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
    table.insert(limits, { id = id, alg = alg, limit = item.limit, window = item.window_ms, key = prefix .. id })
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

-- Phase 1: read and decide every limit.
local impossible, denied, denied_retry = 0, 0, 0
for i, lim in ipairs(limits) do
  local raw = redis.pcall('GET', lim.key)
  if type(raw) ~= 'string' then raw = nil end
  lim.raw = raw
  lim.verdict, lim.state, lim.expiry = ALGORITHMS[lim.alg](raw, now, lim.limit, lim.window, cost)
  if lim.verdict.outcome == -1 and impossible == 0 then impossible = i end
  if lim.verdict.outcome == 0 and (denied == 0 or lim.verdict.retry > denied_retry) then
    denied, denied_retry = i, lim.verdict.retry
  end
end
local commit = impossible == 0 and denied == 0 and mode == 'consume'

-- Phase 2: write every new state, only when all allowed and charging.
if commit then
  for _, lim in ipairs(limits) do
    redis.call('SET', lim.key, lim.state, 'PXAT', fmt(lim.expiry))
  end
end

local outcome, violated, retry = 1, 0, 0
if impossible > 0 then
  outcome, violated = -1, impossible
elseif denied > 0 then
  outcome, violated, retry = 0, denied, denied_retry
end
local reply = { now, outcome, violated, retry, tier_name, override_status, #limits }
for _, lim in ipairs(limits) do
  local shown = lim.verdict
  if not commit then shown = ALGORITHMS[lim.alg](lim.raw, now, lim.limit, lim.window, 0) end
  table.insert(reply, lim.id)
  table.insert(reply, lim.alg)
  table.insert(reply, lim.limit)
  table.insert(reply, lim.window)
  table.insert(reply, shown.remaining)
  table.insert(reply, shown.reset)
  table.insert(reply, shown.next)
end
return reply
