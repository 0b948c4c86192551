-- update_record: replace an existing hash field, optionally keeping the stored created_at.
-- Records keep "created_at" as their last member, so the stored value is taken off the end of the
-- old record and appended to the new body; the record's other bytes are never parsed.
-- KEYS[1] hash (agents, messages or multi)
-- ARGV[1] field
-- ARGV[2] new value; when ARGV[3] is '1', the new record without created_at and without its
--         closing brace
-- ARGV[3] '1' to keep created_at, '0' to store ARGV[2] as it is
-- Returns 1 when updated, 0 when the field does not exist (nothing is written then).
-- Error reply 'SVSM-CORRUPT' when the stored record has no trailing created_at.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return 0
end
local value = ARGV[2]
if ARGV[3] == '1' then
  local created = string.match(old, ',"created_at":("[^"]*")}$')
  if not created then
    return redis.error_reply('SVSM-CORRUPT stored record has no trailing created_at')
  end
  value = value .. ',"created_at":' .. created .. '}'
end
redis.call('HSET', KEYS[1], ARGV[1], value)
return 1
