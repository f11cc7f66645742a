-- Invalidates a whole cache namespace in O(1) by moving its generation forward.
--
-- KEYS[1]  the generation key: {namespace}:cache:v1:{c:<cache ns>}:gen
-- ARGV[1]  how long to keep the key, ms: at least the longest lifetime of any entry
--
-- Entries record the generation they were filled under and are served only while it equals the
-- current one. The new generation is max(current + 1, server time in ms), so it never repeats a
-- value used before, even after the key expired and the count restarted from 0.
--
-- Returns the new generation (integer).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local generation = math.max(current + 1, now)
redis.call('SET', KEYS[1], string.format('%.0f', generation), 'PX', ARGV[1])
return generation
