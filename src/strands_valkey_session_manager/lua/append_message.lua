-- append_message: store one message record and index it, in one atomic step.
-- Overwrites a record with the same id (the SDK reuses message ids). The hot path: one read of the
-- session hash gives the agent's version (present iff the agent exists), its message count and
-- the session's lifetime; one write stores version, count and time of this write.
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] agent id (raw)
-- ARGV[3] message member (encoded agent id ':' 20-digit id)   ARGV[4] message record (JSON)
-- ARGV[5] the agent version the writer last saw ('' not to check)
-- ARGV[6] the writer's lease token ('' or absent: none)
-- Returns the agent's new version; 0 when the agent does not exist; -1 when the version moved on;
-- -3 when another owner holds the agent's lease; -4 when the session does not exist; -5 when the
-- session is damaged: the session hash counts the agent, but its record, or the message keys
-- while it has messages, are gone (eviction). Nothing is written in those cases.
local version_field, count_field = 'v:' .. ARGV[2], 'n:' .. ARGV[2]
local state = redis.call('HMGET', KEYS[1], version_field, count_field, 'ttl', 'deadline')
if not state[1] then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return -4
  end
  return 0
end
local version = tonumber(state[1])
local stored_count = tonumber(state[2] or '0')
if not version or not stored_count or not lifetime_ok(state[3], state[4]) then
  return redis.error_reply('SVSM-CORRUPT a version, count or lifetime field of the session hash is not a number')
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0
    or (stored_count > 0 and redis.call('EXISTS', KEYS[3], KEYS[4]) < 2) then
  return -5
end
local now = now_ms()
if fenced(ARGV[2], ARGV[6], now) then
  return -3
end
if ARGV[5] ~= '' and version ~= tonumber(ARGV[5]) then
  return repeated_write(ARGV[2], ARGV[5], KEYS[3], ARGV[3], ARGV[4]) or -1
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
local count = stored_count + redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('HSET', KEYS[1], version_field, version + 1, count_field, count, 'updated', now)
expire_session(now, tonumber(ARGV[1]), state[3], state[4])
return version + 1
