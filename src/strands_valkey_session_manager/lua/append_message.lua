-- append_message: store one message record and index it, in one atomic step.
-- Overwrites a record with the same id (the SDK reuses message ids).
-- KEYS[1] agents hash
-- KEYS[2] messages hash
-- KEYS[3] order zset
-- ARGV[1] agent id (raw, field of the agents hash)
-- ARGV[2] message member (encoded agent id ':' 20-digit id)
-- ARGV[3] message record (JSON)
-- Returns 1 when written, 0 when the agent does not exist (nothing is written then).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
return 1
