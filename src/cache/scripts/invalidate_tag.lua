-- Deletes every cache entry carrying a tag, and the tag's set, atomically.
--
-- KEYS[1]  the tag set: {namespace}:cache:v1:tag:<tag>, members are entry keys
-- ARGV[1]  prefix every entry key starts with ({namespace}:cache:v1:{c:); members without it
--          are never deleted, so a damaged set cannot reach keys outside the cache
--
-- Returns the number of entries deleted (members that had already expired are not counted).
-- Entry keys are not declared in KEYS: this needs a server where they may be reached from a
-- script (standalone Redis, Upstash); it is not Redis Cluster-safe.
local members = redis.call('SMEMBERS', KEYS[1])
local prefix = ARGV[1]
local batch, deleted = {}, 0
for _, key in ipairs(members) do
  if string.sub(key, 1, #prefix) == prefix then
    batch[#batch + 1] = key
    if #batch == 500 then
      deleted = deleted + redis.call('DEL', unpack(batch))
      batch = {}
    end
  end
end
if #batch > 0 then
  deleted = deleted + redis.call('DEL', unpack(batch))
end
redis.call('DEL', KEYS[1])
return deleted
