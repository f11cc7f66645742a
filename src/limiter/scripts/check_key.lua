--[[ check_key.lua: the limit check of a caller known only by an API key the isolate has not
verified yet: the key's record is read and checked, and the limits of its subject and tier
checked, in ONE script call. A never-seen key then costs one round trip before the origin, not
two (the lookup, then the check).

Built by wrapping check.lua unchanged: its text becomes the body of `check` below (in place of
the marker line). This part reads the record, names the subject's keys and picks the tier's
limits; check.lua does the rest on the KEYS and ARGV built here.

KEYS[1]   the key's record   {ns}:auth:v1:key:<sha256 of the key>

ARGV[1]   base     the subject key base, {ns}:ratelimit:v1: (a subject's keys are
                   base .. "{" .. subject_hash .. "}:" .. name, as src/keys.rs names them)
ARGV[2]   fallback the tier of a record whose tier is not in the table ("" for none)
ARGV[3]   route    the route's name, for its lease set ("" without a concurrency slot)
ARGV[4]   n_tiers  the number of tiers in the table, T
ARGV[5 .. 4+2T]    per tier: name, the number of its limits c
then the tiers' limits, 8 fields each as check.lua takes them, tier after tier
then check.lua's ARGV, as its header documents it, with no tier limits (n_tier = 0) and the
prefix and the subject left empty: both are filled in here from the record.

A record is taken as the registry writes it (src/identity/api_key.rs): JSON with a string id,
a created_ms, a non-empty tier and a subject_hash of 1 to 128 letters and digits; with
revoked_ms it is a tombstone.

Reply: { status, record, check }
  status 1: the key is valid; record is the stored JSON; check is check.lua's reply (or its
            error reply, returned as is)
  status 0: no record (unknown key); 2: revoked; 3: the record is malformed. record and check
            are false, and nothing was read or written but the record.

Cluster: the record carries no hash tag; the subject's keys carry theirs. Fine on Upstash and a
standalone Redis, not on a Redis Cluster (as check_and_read.lua's cache keys).
]]

local function bad(what)
  return redis.error_reply('ERR tollgate check_key.lua: bad ' .. what)
end

local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'table' and stored.err then return { 3, false, false } end
if not stored then return { 0, false, false } end
local ok, record = pcall(cjson.decode, stored)
if not ok or type(record) ~= 'table' then return { 3, false, false } end
if record.revoked_ms ~= nil and record.revoked_ms ~= cjson.null then return { 2, false, false } end
local subject, tier = record.subject_hash, record.tier
if type(subject) ~= 'string' or #subject > 128 or not string.find(subject, '^%w+$')
    or type(tier) ~= 'string' or tier == '' or type(record.id) ~= 'string'
    or type(record.created_ms) ~= 'number' or record.created_ms < 0 then
  return { 3, false, false }
end

local base, fallback, route = ARGV[1], ARGV[2], ARGV[3]
local n_tiers = tonumber(ARGV[4])
if not n_tiers or n_tiers < 0 or #ARGV < 4 + 2 * n_tiers then return bad('tier table') end
local PER = 8
-- The tier's limits: the record's tier if the table has it, else the fallback's.
local chosen_first, chosen_count, fallback_first, fallback_count = nil, 0, nil, 0
local tail = 4 + 2 * n_tiers
for t = 1, n_tiers do
  local name, c = ARGV[4 + 2 * t - 1], tonumber(ARGV[4 + 2 * t])
  if not c or c < 0 then return bad('tier ' .. t) end
  if name == tier then chosen_first, chosen_count = tail, c end
  if name == fallback then fallback_first, fallback_count = tail, c end
  tail = tail + PER * c
end
if chosen_first == nil then chosen_first, chosen_count = fallback_first, fallback_count end
if chosen_first == nil then chosen_count = 0 end

local prefix = base .. '{' .. subject .. '}:'
local inner_argv = {}
for i = tail + 1, #ARGV do table.insert(inner_argv, ARGV[i]) end
local FIXED = 15
if #inner_argv < FIXED or tonumber(inner_argv[5]) ~= 0 then return bad('check arguments') end
local n_route = tonumber(inner_argv[6]) or 0
inner_argv[4], inner_argv[5], inner_argv[7] = prefix, chosen_count, subject
local argv = {}
for i = 1, FIXED do argv[i] = inner_argv[i] end
local keys = { prefix .. 'override' }
for i = 1, chosen_count do
  local at = chosen_first + PER * (i - 1)
  for f = 1, PER do table.insert(argv, ARGV[at + f]) end
  table.insert(keys, prefix .. ARGV[at + 1])
end
for i = 1, n_route do
  local at = FIXED + PER * (i - 1)
  for f = 1, PER do table.insert(argv, inner_argv[at + f]) end
  table.insert(keys, prefix .. inner_argv[at + 1])
end
if #inner_argv ~= FIXED + PER * n_route then return bad('check arguments') end
if (tonumber(inner_argv[8]) or 0) > 0 then table.insert(keys, prefix .. 'lease:' .. route) end

local function check(KEYS, ARGV)
-- @@CHECK_LUA@@
end

return { 1, stored, check(keys, argv) }
