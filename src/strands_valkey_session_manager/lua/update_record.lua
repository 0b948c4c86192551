-- update_record: replace an existing hash field, optionally keeping the stored created_at.
-- Records keep "created_at" as their last member, so the stored value is taken off the end of the
-- old record and appended to the new body; the record's other bytes are never parsed.
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS (2, 3 or 5)   ARGV[3] field
-- ARGV[4] new value; when ARGV[5] is '1', the new record without created_at and its closing brace
-- ARGV[5] '1' to keep created_at, '0' to store ARGV[4] as it is
-- ARGV[6] agent id whose version the write bumps ('' for none)
-- ARGV[7] the agent version the writer last saw ('' not to check)
-- ARGV[8] the writer's lease token ('' or absent: none); -3 when another owner holds the lease
-- Returns the agent's new version (1 when no agent is named); 0 when the field does not exist;
-- -1 when the version moved on (nothing is written in either case).
-- Error reply 'SVSM-CORRUPT' when the stored record has no trailing created_at.
-- -4 when the session does not exist: its other keys may outlive an evicted session hash, and an
-- update there would leave a session hash holding only this write's version (nothing is written).
-- -5 when the session is damaged: the agent's record is gone while the session hash counts it.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -4
end
local key = KEYS[tonumber(ARGV[2])]
local old = redis.call('HGET', key, ARGV[3])
if not old then
  if ARGV[6] ~= '' and ARGV[2] == '3' and redis.call('HEXISTS', KEYS[1], 'v:' .. ARGV[6]) == 1
      and redis.call('HEXISTS', KEYS[2], ARGV[6]) == 0 then
    return -5
  end
  return 0
end
check_lifetime()
if ARGV[6] ~= '' then
  local version = redis.call('HGET', KEYS[1], 'v:' .. ARGV[6])
  if version and not tonumber(version) then
    return redis.error_reply('SVSM-CORRUPT the version field v:' .. ARGV[6] .. ' of the session hash is not a number')
  end
end
local value = ARGV[4]
if ARGV[5] == '1' then
  local created = string.match(old, ',"created_at":("[^"]*")}$')
  if not created then
    return redis.error_reply('SVSM-CORRUPT stored record has no trailing created_at')
  end
  value = value .. ',"created_at":' .. created .. '}'
end
if ARGV[6] ~= '' and fenced(ARGV[6], ARGV[8], now_ms()) then
  return -3
end
if ARGV[6] ~= '' and version_conflict(ARGV[6], ARGV[7]) then
  return repeated_write(ARGV[6], ARGV[7], key, ARGV[3], value) or -1
end
redis.call('HSET', key, ARGV[3], value)
touch(tonumber(ARGV[1]), true)
if ARGV[6] ~= '' then
  return bump_version(ARGV[6])
end
return 1
