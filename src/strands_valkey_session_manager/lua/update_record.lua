-- update_record: replace an existing hash field, optionally keeping the stored created_at.
-- Records keep "created_at" as their last member, so the stored value is taken off the end of the
-- old record and appended to the new body; the record's other bytes are never parsed.
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS (2, 3 or 5)   ARGV[3] field
-- ARGV[4] new value; when ARGV[5] is '1', the new record without created_at and its closing brace
-- ARGV[5] '1' to keep created_at, '0' to store ARGV[4] as it is
-- Returns 1 when updated, 0 when the field does not exist (nothing is written then).
-- Error reply 'SVSM-CORRUPT' when the stored record has no trailing created_at.
local key = KEYS[tonumber(ARGV[2])]
local old = redis.call('HGET', key, ARGV[3])
if not old then
  return 0
end
local value = ARGV[4]
if ARGV[5] == '1' then
  local created = string.match(old, ',"created_at":("[^"]*")}$')
  if not created then
    return redis.error_reply('SVSM-CORRUPT stored record has no trailing created_at')
  end
  value = value .. ',"created_at":' .. created .. '}'
end
redis.call('HSET', key, ARGV[3], value)
touch(tonumber(ARGV[1]), true)
return 1
