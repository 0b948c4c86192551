-- create_session: create the session hash unless it exists; for a fork, fill the other four keys
-- from another session's DUMP payloads in the same step.
-- Leftover keys of the target (agents, messages, order or multi while the session hash is gone:
-- eviction of the hash alone, a manual DEL) are the rest of a conversation: they are never cleared
-- here. The create is refused instead ({-2, index, ...}); delete_session removes such a session, and
-- an import that overwrites replaces it (swap_session.lua).
-- ARGV: name/value pairs (named_args in the prelude):
--   ttl ms (0: none), record (Session JSON), created (unix ms), deadline (unix ms, 0: none),
--   user (user id, '' none), tags (JSON list, '' none), member (catalog member),
--   dump_agents, dump_messages, dump_order, dump_multi: DUMP payloads of the source's keys for a
--     fork ('' when absent or not a fork),
--   dump_session: DUMP payload of the source's session hash, for a fork ('' otherwise): it brings
--     the per-agent counts and versions ('n:..', 'v:..') without one argument per agent
--     (ElastiCache Serverless accepts at most 3,999); the source's own fields are replaced,
--   nonce: of this create call: a repeat of the same call (lost reply) reports success,
--   dek: the session's wrapped data key for field 'dek' ('' none: records are not encrypted); a
--     fork never keeps the source's: encrypted records are bound to their session,
--   clear (optional) '1': delete the five keys first (an import's staging keys, see
--     swap_session.lua: leftovers of an earlier failed staging); never given for a session's own keys,
--   expiry (optional): the session's expiry index entry, kept in field 'expiry' so a delete removes it.
-- Returns 1 when created; {-2, KEYS index of each leftover key} when the session hash is missing
-- but other keys of the session remain (nothing is written). When the session already exists nothing is written and it returns 0 if
-- the session is listed under the same catalog member (same id, same millisecond), else -1: the
-- caller then removes the entry it added for this attempt.
local A = named_args()
if A.clear == '1' then
  redis.call('DEL', unpack(KEYS, KEY_SESSION, KEY_MULTI))
end
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 1 then
  local stored = redis.call('HMGET', KEYS[KEY_SESSION], F_NONCE, F_CATALOG)
  if stored[1] == A.nonce then
    return 1  -- our own create, repeated after its reply was lost
  end
  if stored[2] == A.member then
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
local dumps = {
  [KEY_AGENTS] = A.dump_agents, [KEY_MESSAGES] = A.dump_messages, [KEY_ORDER] = A.dump_order, [KEY_MULTI] = A.dump_multi
}
for i = KEY_AGENTS, KEY_MULTI do
  if dumps[i] ~= '' then
    redis.call('RESTORE', KEYS[i], 0, dumps[i])
  end
end
if A.dump_session ~= '' then
  redis.call('RESTORE', KEYS[KEY_SESSION], 0, A.dump_session)
  redis.call('HDEL', KEYS[KEY_SESSION], F_TTL, F_DEADLINE, F_USER, F_TAGS, F_UPDATED, F_DEK, F_EXPIRY)
  -- The source owner's leases and fencing counters stay with the source: the fork is unowned.
  for _, name in ipairs(redis.call('HKEYS', KEYS[KEY_SESSION])) do
    if string.sub(name, 1, #F_LEASE) == F_LEASE or string.sub(name, 1, #F_FENCE) == F_FENCE then
      redis.call('HDEL', KEYS[KEY_SESSION], name)
    end
  end
end
if A.dek ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_DEK, A.dek)
end
redis.call('HSET', KEYS[KEY_SESSION], F_RECORD, A.record, F_CREATED, A.created, F_CATALOG, A.member, F_NONCE, A.nonce)
if A.deadline ~= '0' then
  redis.call('HSET', KEYS[KEY_SESSION], F_DEADLINE, A.deadline)
end
if A.ttl ~= '0' then
  redis.call('HSET', KEYS[KEY_SESSION], F_TTL, A.ttl)
end
if A.user ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_USER, A.user)
end
if A.tags ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_TAGS, A.tags)
end
if A.expiry and A.expiry ~= '' then
  redis.call('HSET', KEYS[KEY_SESSION], F_EXPIRY, A.expiry)
end
touch(tonumber(A.ttl), true)
return 1
