--[[ settle.lua: after the answer, the difference between a reservation and the usage the origin
reported, refunded or charged on the limits the reservation was taken from, and the
reservation's record in flight removed, atomically.

The Rust models in src/limiter/settle.rs and src/limiter/reservations.rs are the specification of
this script;
tests/limiter_scripts.rs holds the two equal on a real Redis.

Only the window algorithms settle (the policy refuses other algorithms for units other than
requests): their state says which window a unit was counted in.

KEYS[i]  state key of the i-th limit   {ns}:ratelimit:v1:{<subject_hash>}:<limit id>

ARGV[1]  now_ms   "" (production: Redis TIME); a positive integer ONLY in the property tests
ARGV[2]  prefix   the subject's key prefix ({ns}:ratelimit:v1:{<subject_hash>}:), for warning marks
                  and the reservations in flight (prefix .. "usage:reservations", as check.lua
                  keeps them; same hash tag, so not in KEYS)
ARGV[3]  subject  the subject hash, for quota-warning messages
ARGV[4]  reserved_at_ms  the check's now_ms: which window holds the reservation
ARGV[5]  reserve  units the check reserved, >= 1
ARGV[6]  actual   units the origin reported, >= 0 (the reservation when it reported none)
ARGV[7]  res_id   the check's reservation id (its ARGV[13]); "" when none was recorded
ARGV[8]  res_unit the reserved unit (the check's ARGV[14])
ARGV[9]  n        number of limits
ARGV[10+7(i-1) .. 16+7(i-1)]  limit i: id, algorithm (fixed_window | sliding_window), limit,
                  window_ms, unit, mode, warn ("" or comma-separated ppm), as check.lua takes them

With delta = actual - reserve, r the aligned window of reserved_at_ms and c that of now:
  fixed_window    r = c: count <- max(count + delta, 0); r /= c: delta > 0 is counted in c,
                  a refund is dropped (the reservation's window is over)
  sliding_window  r = c: current <- max(current + delta, 0); r = c - window: a refund comes off
                  previous (never below 0), delta > 0 goes to current; older: as fixed_window
Counts read as check.lua reads them (a sliding window's capped at the limit) and are stored at
most 2^52; states are written as check.lua writes them (SET ... PXAT the state's expiry). When
nothing changes (a refund for a window that is over) nothing is written. An extra charge may
carry a count past the limit: the overshoot, paid back by refusing the next requests.

Quota warnings exactly as in check.lua: a settlement moving used = limit - remaining across a
warn fraction publishes once per window per (subject, limit, fraction) on system:quota_warning.

The record: the member res_id .. ":" .. reserve .. ":" .. res_unit is removed from the
reservations in flight (ZREM; removing the last member removes the key; an expired member
check.lua already dropped is simply absent), so the settlement, the record and a release stay one
background round trip.

Reply: [1] now_ms  [2] number of limits written  [3] w  then w x (limit id, ppm, used)
]]

local MAX_EXACT = 9007199254740992 -- 2^53
local CAP = 4503599627370496 -- 2^52
local MAX_WINDOW = 1099511627776 -- 2^40
local MAX_LIMIT_TIMES_WINDOW = 4503599627370496 -- 2^52
local MAX_U32 = 4294967295
local WHOLE_PPM = 1000000
local CHANNEL = 'system:quota_warning'

local function idiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

local function fmt(n)
  return string.format('%.0f', n)
end

local function field(s)
  if s == nil or #s > 16 then return nil end
  local n = tonumber(s)
  if n == nil or n > MAX_EXACT then return nil end
  return n
end

local function whole(x, max)
  return type(x) == 'number' and x >= 1 and x <= max and x == math.floor(x)
end

local function bad(what)
  return redis.error_reply('ERR tollgate settle.lua: bad ' .. what)
end

local now
local given = tonumber(ARGV[1])
if given and given > 0 then
  if not whole(given, MAX_EXACT) then return bad('now_ms') end
  now = given
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)
end
local prefix, subject = ARGV[2], ARGV[3]
local reserved_at, reserve, actual, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9])
local res_id, res_unit = ARGV[7], ARGV[8]
if not whole(reserved_at, MAX_EXACT) then return bad('reserved_at_ms') end
if not whole(reserve, MAX_U32) then return bad('reserve') end
if actual ~= 0 and not whole(actual, MAX_U32) then return bad('actual') end
if not (n and n >= 0) or #ARGV ~= 9 + 7 * n or #KEYS ~= n then return bad('number of KEYS or ARGV') end
if res_id ~= '' then
  if #res_id > 64 or not string.find(res_id, '^[%w_%-]+$') then return bad('reservation id') end
  if not string.find(res_unit, '^[%l][%l%d_%-]*$') then return bad('reservation unit') end
end

-- (count + actual - reserve), never below 0, at most CAP.
local function adjust(count)
  return math.min(math.max(count + actual - reserve, 0), CAP)
end
local extra = math.max(actual - reserve, 0)

-- Units used as check.lua's verdicts count them: limit - remaining.
local function used_fw(count, l) return math.min(count, l) end
local function used_sw(cur, prev, l, w, elapsed)
  return math.min(idiv(prev * (w - elapsed), w) + cur, l)
end

local written, warnings = 0, {}
for i = 1, n do
  local base = 9 + 7 * (i - 1)
  local id, alg, l, w = ARGV[base + 1], ARGV[base + 2], tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local unit, lmode, warn_text = ARGV[base + 5], ARGV[base + 6], ARGV[base + 7]
  if not whole(l, MAX_U32) or not whole(w, MAX_WINDOW) or l * w > MAX_LIMIT_TIMES_WINDOW then
    return bad('limit ' .. i)
  end
  local key = KEYS[i]
  local raw = redis.pcall('GET', key)
  if type(raw) ~= 'string' then raw = nil end
  local start = idiv(now, w) * w
  local res_start = idiv(reserved_at, w) * w
  local elapsed = now - start
  local state, expiry, used_before, used_after
  if alg == 'fixed_window' then
    local count = 0
    if raw then
      local a, b = string.match(raw, '^fw:(%d+):(%d+)$')
      a, b = field(a), field(b)
      if a and b and a == start then count = b end
    end
    local new
    if res_start == start then new = adjust(count)
    elseif extra > 0 then new = math.min(count + extra, CAP) end
    if new then
      state, expiry = 'fw:' .. fmt(start) .. ':' .. fmt(new), start + w
      used_before, used_after = used_fw(count, l), used_fw(new, l)
    end
  elseif alg == 'sliding_window' then
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
    local ncur, nprev
    if res_start == start then ncur, nprev = adjust(cur), prev
    elseif res_start + w == start and actual < reserve then ncur, nprev = cur, adjust(prev)
    elseif extra > 0 then ncur, nprev = math.min(cur + extra, CAP), prev end
    if ncur then
      state, expiry = 'sw:' .. fmt(start) .. ':' .. fmt(ncur) .. ':' .. fmt(nprev), start + 2 * w
      used_before = used_sw(cur, prev, l, w, elapsed)
      used_after = used_sw(math.min(ncur, l), math.min(nprev, l), l, w, elapsed)
    end
  else
    return bad('algorithm of limit ' .. i)
  end
  if state then
    redis.call('SET', key, state, 'PXAT', fmt(expiry))
    written = written + 1
    if warn_text ~= '' then
      for part in string.gmatch(warn_text .. ',', '([^,]*),') do
        local ppm = tonumber(part)
        if not whole(ppm, WHOLE_PPM) then return bad('warn of limit ' .. i) end
        local threshold = math.max(idiv(l * ppm + WHOLE_PPM - 1, WHOLE_PPM), 1)
        if used_before < threshold and threshold <= used_after then
          local mark = prefix .. 'warn:' .. id .. ':' .. fmt(ppm)
          local held = redis.pcall('GET', mark)
          held = type(held) == 'string' and tonumber(held) or nil
          if not (held and held > now) then
            local until_ms = start + w
            redis.call('SET', mark, fmt(until_ms), 'PXAT', fmt(until_ms))
            redis.call('PUBLISH', CHANNEL, cjson.encode({
              subject = subject, limit = id, unit = unit, mode = lmode, used = used_after,
              quota = l, window_ms = w, fraction = ppm / WHOLE_PPM, time = now }))
            table.insert(warnings, { id, ppm, used_after })
          end
        end
      end
    end
  end
end

if res_id ~= '' then
  redis.call('ZREM', prefix .. 'usage:reservations', res_id .. ':' .. fmt(reserve) .. ':' .. res_unit)
end

local reply = { now, written, #warnings }
for _, x in ipairs(warnings) do
  table.insert(reply, x[1])
  table.insert(reply, x[2])
  table.insert(reply, x[3])
end
return reply
