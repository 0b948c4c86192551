-- delete_session: remove every key of a session at once.
-- KEYS[1] session record key; KEYS[2..] the session's other keys
-- Returns 1 when deleted, 0 when the session does not exist (nothing is deleted then).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', unpack(KEYS))
return 1
