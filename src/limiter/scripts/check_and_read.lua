--[[ check_and_read.lua: the limit check and, when it allows, the cache read, in ONE script call.

Built by wrapping check.lua unchanged: its text becomes the body of `check` below (in place of
the marker line), run on its own KEYS and ARGV. A Redis cache hit then costs
one command (one EVALSHA) instead of two (EVALSHA + MGET).

KEYS[1 .. n]      the check's KEYS, exactly as check.lua documents them
KEYS[n+1], [n+2]  the cache namespace's generation key and the entry key (as MGET reads them)
KEYS[n+3]         (read count 3 only) the entry's fill lock key
ARGV[1 .. m]      the check's ARGV, exactly as check.lua documents them
ARGV[m+1], [m+2]  (read count 3 only) the fill lock's token and its time to live, ms
last ARGV         the read count: the number of cache keys at the end of KEYS, 2 or 3 (0: none)

With a read count of 3, a check that allows and finds no entry at all also takes the fill lock
(SET lock token NX PX ttl), so a miss goes to the origin after this one round trip.

Wrapped around check_key.lua (itself around check.lua) instead, with `keyed` true, the check
is the key check: KEYS and ARGV are check_key.lua's, and the first part of the reply is
check_key.lua's reply; the entry is read only when the key is valid and the check allowed.

Reply: { <check.lua's reply>, <MGET reply of the two keys, or nil when the check did not allow>,
<1 lock taken, 0 lock held by another filler, nil not tried> }; a check.lua error reply is
returned as is.

Cluster: the cache keys carry the namespace's hash tag, not the subject's: fine on Upstash and a
standalone Redis, not on a Redis Cluster.
]]

local n_read = tonumber(ARGV[#ARGV]) or 0
if n_read ~= 0 and n_read ~= 2 and n_read ~= 3 then
  return redis.error_reply('ERR check_and_read: bad read count')
end
local n_extra = (n_read == 3) and 3 or 1
local check_keys, check_argv = {}, {}
for i = 1, #KEYS - n_read do check_keys[i] = KEYS[i] end
for i = 1, #ARGV - n_extra do check_argv[i] = ARGV[i] end

local keyed = false -- @@KEYED@@

local function check(KEYS, ARGV)
-- @@CHECK_LUA@@
end

local result = check(check_keys, check_argv)
if type(result) ~= 'table' or result.err then return result end
local decided = result
if keyed then
  if result[1] ~= 1 then return { result, false } end
  decided = result[3]
  if type(decided) ~= 'table' or decided.err then return decided end
end
if n_read == 2 and decided[2] == 1 then
  return { result, redis.call('MGET', KEYS[#KEYS - 1], KEYS[#KEYS]) }
end
if n_read == 3 and decided[2] == 1 then
  local read = redis.call('MGET', KEYS[#KEYS - 2], KEYS[#KEYS - 1])
  local lock = false
  if not read[2] then
    local ttl = tonumber(ARGV[#ARGV - 1])
    if not ttl or ttl < 1 then return redis.error_reply('ERR check_and_read: bad lock ttl') end
    lock = redis.call('SET', KEYS[#KEYS], ARGV[#ARGV - 2], 'NX', 'PX', ttl) and 1 or 0
  end
  return { result, read, lock }
end
return { result, false }
