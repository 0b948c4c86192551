-- append_message: store one message record and index it, in one atomic step.
-- Overwrites a record with the same id (the SDK reuses message ids); counts new ids per agent in
-- the session hash field 'n:<agent id>' for the catalog.
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] agent id (raw)
-- ARGV[3] message member (encoded agent id ':' 20-digit id)   ARGV[4] message record (JSON)
-- ARGV[5] the agent version the writer last saw ('' not to check)
-- Returns the agent's new version; 0 when the agent does not exist; -1 when the version moved on
-- (nothing is written in either case).
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  return 0
end
if version_conflict(ARGV[2], ARGV[5]) then
  return repeated_write(ARGV[2], ARGV[5], KEYS[3], ARGV[3], ARGV[4]) or -1
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if redis.call('ZADD', KEYS[4], 0, ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'n:' .. ARGV[2], 1)
end
touch(tonumber(ARGV[1]), true)
return bump_version(ARGV[2])
