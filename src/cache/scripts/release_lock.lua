-- Releases a cache fill lock, but only for its owner (compare-and-delete).
--
-- KEYS[1]  the lock key: {namespace}:lock:v1:<sha256 of the entry key>
-- ARGV[1]  the owner's token: random hex, one per acquisition (SET KEYS[1] token NX PX ttl)
--
-- Returns 1 when KEYS[1] held ARGV[1] and is now deleted; 0 when it did not (the lock expired,
-- or expired and was taken by another owner, whose lock is left alone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
