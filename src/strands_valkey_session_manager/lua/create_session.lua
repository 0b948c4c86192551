-- create_session: create the session hash unless it exists; for a fork, fill the other four keys
-- from another session's DUMP payloads in the same step.
-- Leftover keys of the target (agents, messages, order or multi while the session hash is gone:
-- eviction of the hash alone, a manual DEL) are the rest of a conversation: they are never cleared
-- here. The create is refused instead ({-2, index, ...}); delete_session removes such a session, and
-- an import that overwrites replaces it (swap_session.lua).
-- ARGV[1] ttl ms (0: none)   ARGV[2] Session record (JSON)   ARGV[3] created, unix ms
-- ARGV[4] deadline, unix ms (0: none)   ARGV[5] user id ('' none)   ARGV[6] tags (JSON list, '' none)
-- ARGV[7] catalog member
-- ARGV[8..11] DUMP payloads of the source's agents, messages, order and multi keys ('' when absent or not a fork)
-- ARGV[12] nonce of this create call: a repeat of the same call (lost reply) reports success
-- ARGV[13] DUMP payload of the source's session hash, for a fork ('' otherwise): it brings the
--          per-agent counts and versions ('n:..', 'v:..') without one argument per agent
--          (ElastiCache Serverless accepts at most 3,999); the source's own fields are replaced.
-- ARGV[14] the session's wrapped data key for field 'dek' ('' none: records are not encrypted).
--          A fork never keeps the source's: encrypted records are bound to their session.
-- ARGV[15] (optional) '1': delete the five keys first (an import's staging keys, see swap_session.lua:
--          leftovers of an earlier failed staging); never given for a session's own keys.
-- ARGV[16] (optional) the session's expiry index entry, kept in field 'expiry' so a delete removes it.
-- Returns 1 when created; {-2, KEYS index of each leftover key} when the session hash is missing
-- but other keys of the session remain (nothing is written). When the session already exists nothing is written and it returns 0 if
-- the session is listed under the same catalog member (same id, same millisecond), else -1: the
-- caller then removes the entry it added for this attempt.
if ARGV[15] == '1' then
  redis.call('DEL', unpack(KEYS, KEY_SESSION, KEY_MULTI))
end
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 1 then
  local stored = redis.call('HMGET', KEYS[KEY_SESSION], F_NONCE, F_CATALOG)
  if stored[1] == ARGV[12] then
    return 1  -- our own create, repeated after its reply was lost
  end
  if stored[2] == ARGV[7] then
    return R_CREATE_EXISTS_LISTED
  end
  return R_CREATE_EXISTS
end
local leftovers = {R_CREATE_LEFTOVERS}
for i = KEY_AGENTS, KEY_MULTI do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    leftovers[#leftovers + 1] = i
  end
end
if #leftovers > 1 then
  return leftovers
end
for i = KEY_AGENTS, KEY_MULTI do
  if ARGV[6 + i] ~= '' then
    redis.call('RESTORE', KEYS[i], 0, ARGV[6 + i])
  end
end
if ARGV[13] ~= '' then
  redis.call('RESTORE', KEYS[KEY_SESSION], 0, ARGV[13])
  redis.call('HDEL', KEYS[KEY_SESSION], F_TTL, F_DEADLINE, F_USER, F_TAGS, F_UPDATED, F_DEK, F_EXPIRY)
  -- The source owner's leases and fencing counters stay with the source: the fork is unowned.
  for _, name in ipairs(redis.call('HKEYS', KEYS[KEY_SESSION])) do
    if string.sub(name, 1, #F_LEASE) == F_LEASE or string.sub(name, 1, #F_FENCE) == F_FENCE then
      redis.call('HDEL', KEYS[KEY_SESSION], name)
    end
  end
end
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_DEK, ARGV[14])
end
redis.call('HSET', KEYS[KEY_SESSION], F_RECORD, ARGV[2], F_CREATED, ARGV[3], F_CATALOG, ARGV[7], F_NONCE, ARGV[12])
if ARGV[4] ~= '0' then
  redis.call('HSET', KEYS[KEY_SESSION], F_DEADLINE, ARGV[4])
end
if ARGV[1] ~= '0' then
  redis.call('HSET', KEYS[KEY_SESSION], F_TTL, ARGV[1])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_USER, ARGV[5])
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_TAGS, ARGV[6])
end
if ARGV[16] and ARGV[16] ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_EXPIRY, ARGV[16])
end
touch(tonumber(ARGV[1]), true)
return 1
