-- delete_session: remove every key of a session at once, whatever the keys hold (a damaged session,
-- with a key of the wrong type or leftover keys after its session hash was evicted, is removed too).
-- ARGV[1] (optional, prune) idle cutoff, unix ms: delete only if the session's 'updated' (else
--         'created') is before it, so a write after the caller's idle check keeps the session
-- ARGV[2] (optional, with ARGV[1]) the catalog member the caller saw: delete only if the session is
--         still listed under it (not deleted and created again meanwhile)
-- ARGV[3] (optional, a key store that shreds) the session's field 'dek' as the caller found it and
--         destroyed its keys ('' none): delete only if it is still that one
-- Returns nil when no key of the session exists (nothing is deleted then); 0 when a condition of
-- ARGV[1]/ARGV[2] does not hold (nothing is deleted); the session's 'dek' ('' none), a string, when
-- it is not ARGV[3] (nothing is deleted: the caller destroys that key's set, then calls again);
-- else the catalog entry the caller must remove and the deleted 'dek': {catalog member, user id
-- or '', tags JSON or '', expiry index entry or '', dek or ''} ('' each when the session hash was
-- missing or not a hash).
if redis.call('EXISTS', unpack(KEYS, KEY_SESSION, KEY_MULTI)) == 0 then
  return nil
end
local entry = redis.pcall('HMGET', KEYS[KEY_SESSION], F_CATALOG, F_USER, F_TAGS, F_UPDATED, F_CREATED, F_EXPIRY, F_DEK)
if entry.err then
  entry = {}
end
if ARGV[1] and ARGV[1] ~= '' then
  local last = tonumber(entry[4] or entry[5] or '')
  if not last or last >= tonumber(ARGV[1]) or entry[1] ~= ARGV[2] then
    return 0
  end
end
if ARGV[3] and (entry[7] or '') ~= ARGV[3] then
  return entry[7] or ''
end
redis.call('DEL', unpack(KEYS, KEY_SESSION, KEY_MULTI))
return {entry[1] or '', entry[2] or '', entry[3] or '', entry[6] or '', entry[7] or ''}
