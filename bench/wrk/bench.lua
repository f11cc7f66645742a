-- wrk script for every scenario of bench/run. Configured through environment variables (set by
-- bench/lib/wrk.mjs); prints one line `BENCH_JSON {...}` at the end with the numbers.
--
-- Latency is measured here, not by wrk: the latency statistics of wrk 4.1.0 (Debian) disagree
-- with Little's law on this machine (at -c1, a mean of 6 ms for 27k requests in 3 s), while a
-- clock read in request() and response() agrees with it. That pairing needs ONE connection per
-- wrk thread (run with -tN -cN): request() and response() of a thread then belong together.
--
-- BENCH_MODE
--   fixed     every request the same: BENCH_METHOD, BENCH_PATH, BENCH_HEADERS, BENCH_BODY
--   unique    like fixed, but the path is BENCH_PATH .. "<thread>-<n>" (a new cache key each time)
--   fresh_ip  like fixed, but CF-Connecting-IP is a new address per request, from
--             BENCH_IP_BASE + thread * 2^16 + n; each thread stops after BENCH_STOP_AFTER answers
--             (with one connection per thread, nothing is in flight then)
--   mix       the realistic mix (see `mix_request` below)
-- BENCH_HEADERS is "Name: value" lines separated by "\n".

local mode = os.getenv("BENCH_MODE") or "fixed"
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "0")
local ip_base = tonumber(os.getenv("BENCH_IP_BASE") or "0")

local function parse_headers(text)
  local h = {}
  for line in string.gmatch(text or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then h[name] = value end
  end
  return h
end
local base_headers = parse_headers(os.getenv("BENCH_HEADERS"))

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function ip_of(n)
  return string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

-- A monotonic clock in microseconds (LuaJIT FFI), for runs that stop early: wrk itself reports
-- the full -d duration even when every thread stopped sooner.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local function split(text, sep)
  local out = {}
  for part in string.gmatch(text or "", "[^" .. sep .. "]+") do out[#out + 1] = part end
  return out
end

-- main state ------------------------------------------------------------------------------------

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- thread state ----------------------------------------------------------------------------------

tid = 0
n = 0
answers = 0
s2xx = 0
s3xx = 0
s429 = 0
s4xx = 0
s5xx = 0
hit = 0
miss = 0
stale = 0
bypass = 0
nocache = 0
m_redis = 0
m_local = 0
m_other = 0
m_none = 0
first_us = 0
last_us = 0

-- latency histogram (thread state): bucket → count; see bucket_of
hist = {}
lat_sum = 0
lat_max = 0
local sent_us = 0

-- Log-scale buckets, 2% wide (so any percentile is within ~1% of the true value); 1 µs floor.
local LOG_STEP = math.log(1.02)
local function bucket_of(us)
  if us < 1 then us = 1 end
  return math.floor(math.log(us) / LOG_STEP)
end
local function bucket_mid(b)
  return math.exp((b + 0.5) * LOG_STEP)
end

-- mix settings (thread state)
local mix = nil
local fixed_request = nil

function init(args)
  math.randomseed(1000 + tid * 7919)
  if mode == "fixed" then
    wrk.method = method
    wrk.path = path
    -- add to wrk's own headers (they carry Host)
    for k, v in pairs(base_headers) do wrk.headers[k] = v end
    if body then wrk.body = body end
    fixed_request = wrk.format(method, path, wrk.headers, body)
  elseif mode == "mix" then
    mix = {
      hot_configs = tonumber(os.getenv("BENCH_MIX_HOT_CONFIGS") or "16"),
      hot_queries = tonumber(os.getenv("BENCH_MIX_HOT_QUERIES") or "8"),
      ips = tonumber(os.getenv("BENCH_MIX_IPS") or "40"),
      basic = split(os.getenv("BENCH_MIX_BASIC_KEYS"), ","),
      pro = split(os.getenv("BENCH_MIX_PRO_KEYS"), ","),
      unique = os.getenv("BENCH_MIX_UNIQUE") or "u",
    }
  end
end

local function caller_headers(h)
  local r = math.random()
  if r < 0.5 or (#mix.basic == 0 and #mix.pro == 0) then
    h["CF-Connecting-IP"] = string.format("198.51.100.%d", math.random(1, mix.ips))
  elseif r < 0.75 and #mix.basic > 0 then
    h["CF-Connecting-IP"] = "198.51.100.250"
    h["Authorization"] = "Bearer " .. mix.basic[math.random(1, #mix.basic)]
  else
    local keys = (#mix.pro > 0) and mix.pro or mix.basic
    h["CF-Connecting-IP"] = "198.51.100.251"
    h["Authorization"] = "Bearer " .. keys[math.random(1, #keys)]
  end
  return h
end

-- The mix: 55% hot config reads, 25% hot RAG contexts (all cache hits once warm), 6% config
-- reads of a new name and 4% RAG contexts of a new query (misses), 6% search (GET, proxied,
-- route limit) and 4% chat (POST, proxied, route limit). Callers: 50% anonymous (one of
-- BENCH_MIX_IPS addresses), 25% BASIC keys, 25% PRO keys.
local function mix_request()
  local h = caller_headers({})
  local r = math.random()
  if r < 0.55 then
    return wrk.format("GET", string.format("/api/config/hot-%d", math.random(1, mix.hot_configs)), h)
  elseif r < 0.80 then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/rag/context", h,
      string.format('{"query":"hot question %d"}', math.random(1, mix.hot_queries)))
  elseif r < 0.86 then
    return wrk.format("GET", string.format("/api/config/%s-%d-%d", mix.unique, tid, n), h)
  elseif r < 0.90 then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/rag/context", h,
      string.format('{"query":"cold question %s %d %d"}', mix.unique, tid, n))
  elseif r < 0.96 then
    return wrk.format("GET", string.format("/api/search?q=term%d", math.random(1, 50)), h)
  else
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/chat/completions", h, '{"messages":[{"role":"user","content":"hi"}]}')
  end
end

local function dynamic_request()
  n = n + 1
  if mode == "unique" then
    return wrk.format(method, string.format("%s%d-%d", path, tid, n), base_headers, body)
  elseif mode == "fresh_ip" then
    local h = copy(base_headers)
    -- wrk calls request() once more on thread 0 to check the script, so thread 0 starts at n = 2:
    -- priming runs stop one answer later than measured ones to cover that
    h["CF-Connecting-IP"] = ip_of(ip_base + tid * 65536 + n)
    return wrk.format(method, path, h, body)
  elseif mode == "mix" then
    return mix_request()
  end
  return fixed_request
end

function request()
  local r = dynamic_request()
  sent_us = now_us()
  return r
end

function response(status, headers, resp_body)
  local lat = now_us() - sent_us
  -- the first answer of a thread is left out of the latency figures: on thread 0 its clock can
  -- start at wrk's own check of request() during start-up (seen as a ~2 s first request)
  if answers > 0 then
    local b = bucket_of(lat)
    hist[b] = (hist[b] or 0) + 1
    lat_sum = lat_sum + lat
    if lat > lat_max then lat_max = lat end
  end
  answers = answers + 1
  if first_us == 0 then first_us = sent_us end
  if status == 429 then s429 = s429 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  elseif status >= 300 then s3xx = s3xx + 1
  else s2xx = s2xx + 1 end
  local xc = headers["x-cache"] or headers["X-Cache"]
  if xc == "HIT" then hit = hit + 1
  elseif xc == "MISS" then miss = miss + 1
  elseif xc == "STALE" then stale = stale + 1
  elseif xc == "BYPASS" then bypass = bypass + 1
  else nocache = nocache + 1 end
  -- where Tollgate decided the limits: "redis", or a degraded mode ("local", "open", "memory")
  local mode_h = headers["x-tollgate-mode"] or headers["X-Tollgate-Mode"]
  if mode_h == nil then m_none = m_none + 1
  elseif mode_h == "redis" then m_redis = m_redis + 1
  elseif mode_h == "local" then m_local = m_local + 1
  else m_other = m_other + 1 end
  if stop_after > 0 and answers <= stop_after then last_us = now_us() end
  if stop_after > 0 and answers == stop_after then
    -- tells bench/lib/wrk.mjs this thread is done; once all are, it ends wrk early with SIGINT
    io.write("BENCH_THREAD_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

-- report (main state) ---------------------------------------------------------------------------

function done(summary, latency, requests)
  local counts = { s2xx = 0, s3xx = 0, s429 = 0, s4xx = 0, s5xx = 0, hit = 0, miss = 0, stale = 0, bypass = 0, nocache = 0,
                   m_redis = 0, m_local = 0, m_other = 0, m_none = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(counts) do
      counts[k] = counts[k] + (tonumber(t:get(k)) or 0)
    end
  end
  local parts = {}
  local function add(k, v) parts[#parts + 1] = string.format('"%s":%s', k, v) end
  add("requests", summary.requests)
  add("duration_us", summary.duration)
  if stop_after > 0 then
    -- the measured window: first request sent to the last counted answer, over all threads
    local first, last = nil, 0
    for _, t in ipairs(threads) do
      local f, l = tonumber(t:get("first_us")) or 0, tonumber(t:get("last_us")) or 0
      if f > 0 and (first == nil or f < first) then first = f end
      if l > last then last = l end
    end
    local counted = 0
    for _, t in ipairs(threads) do
      counted = counted + math.min(tonumber(t:get("answers")) or 0, stop_after)
    end
    add("counted_requests", counted)
    add("counted_duration_us", string.format("%.0f", (first and last > first) and (last - first) or 0))
  end
  add("bytes", summary.bytes)
  add("err_connect", summary.errors.connect)
  add("err_read", summary.errors.read)
  add("err_write", summary.errors.write)
  add("err_status", summary.errors.status)
  add("err_timeout", summary.errors.timeout)
  -- merged histogram of all threads
  local merged, total, sum, max = {}, 0, 0, 0
  for _, t in ipairs(threads) do
    for b, c in pairs(t:get("hist") or {}) do
      merged[b] = (merged[b] or 0) + c
      total = total + c
    end
    sum = sum + (tonumber(t:get("lat_sum")) or 0)
    local m = tonumber(t:get("lat_max")) or 0
    if m > max then max = m end
  end
  local keys = {}
  for b, _ in pairs(merged) do keys[#keys + 1] = b end
  table.sort(keys)
  local function pct(p)
    local want, seen = total * p / 100, 0
    for _, b in ipairs(keys) do
      seen = seen + merged[b]
      if seen >= want then return bucket_mid(b) end
    end
    return 0
  end
  add("lat_mean_us", string.format("%.1f", total > 0 and sum / total or 0))
  add("lat_max_us", string.format("%.0f", max))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    add(string.format("lat_p%s_us", string.gsub(tostring(p), "%.", "_")), string.format("%.0f", pct(p)))
  end
  add("lat_samples", total)
  -- wrk's own figures, for reference only (see the top of this file)
  add("wrk_lat_mean_us", string.format("%.1f", latency.mean))
  add("wrk_lat_p99_us", latency:percentile(99))
  for k, v in pairs(counts) do add(k, v) end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
