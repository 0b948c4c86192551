-- session_dek: store the session's wrapped data key (field 'dek') when it holds the expected one.
-- Gives an existing session its first data key (expected ''), and re-wraps one (rotation) only if
-- no other writer changed it in between. The record data is never touched.
-- ARGV[1] wrapped data key to store (base64)   ARGV[2] the wrapped key expected now ('' for none)
-- Returns false when the session does not exist (nothing is written then), else the wrapped key
-- stored after the call: ARGV[1] when it was written, the other writer's otherwise.
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  return false
end
local stored = redis.call('HGET', KEYS[KEY_SESSION], F_DEK) or ''
if stored == ARGV[2] then
  redis.call('HSET', KEYS[KEY_SESSION], F_DEK, ARGV[1])
  return ARGV[1]
end
return stored
