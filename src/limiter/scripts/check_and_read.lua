--[[ check_and_read.lua: the limit check and, when it allows, the cache read, in ONE script call.

Built by wrapping check.lua unchanged: its text becomes the body of `check` below (in place of
the marker line), run on its own KEYS and ARGV. A Redis cache hit then costs
one command (one EVALSHA) instead of two (EVALSHA + MGET).

KEYS[1 .. n]      the check's KEYS, exactly as check.lua documents them
KEYS[n+1], [n+2]  the cache namespace's generation key and the entry key (as MGET reads them)
ARGV[1 .. m]      the check's ARGV, exactly as check.lua documents them
ARGV[m+1]         the number of cache keys at the end of KEYS: 2 (or 0: no read)

Reply: { <check.lua's reply>, <MGET reply of the two keys, or nil when the check did not allow> };
a check.lua error reply is returned as is.

Cluster: the cache keys carry the namespace's hash tag, not the subject's: fine on Upstash and a
standalone Redis, not on a Redis Cluster.
]]

local n_read = tonumber(ARGV[#ARGV]) or 0
if n_read ~= 0 and n_read ~= 2 then return redis.error_reply('ERR check_and_read: bad read count') end
local check_keys, check_argv = {}, {}
for i = 1, #KEYS - n_read do check_keys[i] = KEYS[i] end
for i = 1, #ARGV - 1 do check_argv[i] = ARGV[i] end

local function check(KEYS, ARGV)
-- @@CHECK_LUA@@
end

local decided = check(check_keys, check_argv)
if type(decided) ~= 'table' or decided.err then return decided end
if n_read == 2 and decided[2] == 1 then
  return { decided, redis.call('MGET', KEYS[#KEYS - 1], KEYS[#KEYS]) }
end
return { decided, false }
