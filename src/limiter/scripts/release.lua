--[[ release.lua: the end of one request's concurrency lease (its body ended, or its client left).

KEYS[1]  the route's lease set of the subject (sorted set: member = lease id, score = deadline)
         {ns}:ratelimit:v1:{<subject_hash>}:lease:<route>
ARGV[1]  the lease id check.lua added

The set keeps the expiry check.lua gave it (its latest deadline); removing the last member
removes the key. A lease never released still frees at its deadline: check.lua does not count
it from then on, and removes it at the next acquisition.

Reply: 1 when the lease was held, 0 when it was not (already released, or expired and removed).
]]

if #KEYS ~= 1 or #ARGV ~= 1 or ARGV[1] == '' then
  return redis.error_reply('ERR tollgate release.lua: bad KEYS or ARGV')
end
return redis.call('ZREM', KEYS[1], ARGV[1])
