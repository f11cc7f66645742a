-- Stores a filled entry, files it under its tags and gives the fill lock back: one command for
-- the whole write of a cache miss.
--
-- KEYS[1]       the entry key
-- KEYS[2]       the fill lock key ({namespace}:lock:v1:<sha256 of the entry key>)
-- KEYS[3 .. n]  the tag keys of the entry ({namespace}:cache:v1:tag:<tag>)
-- ARGV[1]       the encoded entry (bytes)
-- ARGV[2]       its lifetime, ms, >= 1 (fresh TTL + jitter + stale window): SET ... PX
-- ARGV[3]       the lock owner's token; "" when this fill holds no lock
--
-- Each tag set holds the entry key and lives at least as long as the entry (PEXPIRE NX, then GT:
-- it never shortens). The lock is deleted only if it still holds ARGV[3] (compare-and-delete).
-- Returns 1. Needs Redis >= 7 (PEXPIRE NX/GT).
local px = tonumber(ARGV[2])
if not px or px < 1 then return redis.error_reply('ERR store_entry: bad lifetime') end
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  redis.call('PEXPIRE', KEYS[i], px, 'NX')
  redis.call('PEXPIRE', KEYS[i], px, 'GT')
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
