-- read_field: HGET that also extends the session's lifetime (touch_on_read).
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS   ARGV[3] field
-- Returns the value, or nil. Error reply 'SVSM-CORRUPT ...' when the session's lifetime fields are
-- garbled (nothing is touched then).
local value = redis.call('HGET', KEYS[tonumber(ARGV[2])], ARGV[3])
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 1 then
  touch(tonumber(ARGV[1]), false)
end
return value
