-- swap_session: replace a session by the one an import staged beside it, in one atomic step, so an
-- import that overwrites is all or nothing (a failure while staging leaves the original untouched).
-- KEYS[1..5] the session's keys; KEYS[6..10] the staging keys (same hash tag, same slot), in the
-- same order. The staged copies are moved with DUMP/RESTORE: O(size of the session) in this step.
-- ARGV[1] ttl ms (0: none)   ARGV[2] deadline, unix ms (0: none)   ARGV[3] the import's staging nonce
-- Returns {-1} when the staging hash is not this import's (expired, or replaced by another import):
-- nothing is changed. Else {1, old catalog member, old user id, old tags JSON, old dek, old expiry
-- index entry} ('' each
-- when absent, or when the old session hash was missing or not a hash).
local staged = redis.pcall('HGET', KEYS[6], F_NONCE)
if type(staged) ~= 'string' or staged ~= ARGV[3] then
  return {R_SWAP_NOT_STAGED}
end
local old = redis.pcall('HMGET', KEYS[1], F_CATALOG, F_USER, F_TAGS, F_DEK, F_EXPIRY)
if old.err then
  old = {}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for i = 1, 5 do
  local stage = KEYS[5 + i]
  if redis.call('EXISTS', stage) == 1 then
    redis.call('RESTORE', KEYS[i], 0, redis.call('DUMP', stage))
    redis.call('DEL', stage)
  end
end
redis.call('HDEL', KEYS[1], F_TTL, F_DEADLINE)
if ARGV[2] ~= '0' then
  redis.call('HSET', KEYS[1], F_DEADLINE, ARGV[2])
end
if ARGV[1] ~= '0' then
  redis.call('HSET', KEYS[1], F_TTL, ARGV[1])
end
touch(tonumber(ARGV[1]), true)
return {1, old[1] or '', old[2] or '', old[3] or '', old[4] or '', old[5] or ''}
