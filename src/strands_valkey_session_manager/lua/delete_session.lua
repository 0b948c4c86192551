-- delete_session: remove every key of a session at once.
-- Returns nil when the session does not exist (nothing is deleted then), else the catalog entry
-- the caller must remove: {catalog member, user id or '', tags JSON or ''}.
local entry = redis.call('HMGET', KEYS[1], 'catalog', 'user', 'tags')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {entry[1] or '', entry[2] or '', entry[3] or ''}
