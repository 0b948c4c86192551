-- update_record: replace an existing hash field, optionally keeping the stored created_at.
-- A message rewritten counts in its agent's rewrites 'w:<agent id>' (see list_messages.lua).
-- Records keep "created_at" as their last member, so the stored value is taken off the end of the
-- old record and appended to the new body; the record's other bytes are never parsed.
-- ARGV: name/value pairs (named_args in the prelude):
--   ttl ms (0: the session's), index of the hash in KEYS (2, 3 or 5), field,
--   value: the new value; with keep_created '1', the new record without created_at and its closing brace,
--   keep_created: '1' to keep created_at, '0' to store value as it is,
--   agent: agent id whose version the write bumps ('' for none),
--   expected: the agent version the writer last saw ('' not to check),
--   token: the writer's lease token ('' or absent: none); -3 when another owner holds the lease,
--   dek: the wrapped data key the record was sealed under ('' or absent: not checked); -6 when the
--     session holds another one (see stale_data_key in _prelude.lua).
-- Returns the agent's new version (1 when no agent is named); 0 when the field does not exist;
-- -1 when the version moved on; -3 (lease, above); -4 when the session does not exist: its other
-- keys may outlive an evicted session hash, and an update there would leave a session hash holding
-- only this write's version; -5 when the session is damaged (a key its shape requires, or the
-- named agent's record, is gone); -7 when sent without KEYS[5] (an agent's or a message's update)
-- to a session that has a multi key (undeclared_multi). Nothing is written in those cases, nor on
-- an error reply 'SVSM-CORRUPT' (the stored record has no trailing created_at, a field of the
-- session hash is garbled).
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  return R_SESSION_GONE
end
local A = named_args()
local index, agent = tonumber(A.index), A.agent
local version_field, count_field, rewrites_field = F_VERSION .. agent, F_COUNT .. agent, F_REWRITES .. agent
local state = redis.call('HMGET', KEYS[KEY_SESSION], F_SHAPE, F_TTL, F_DEADLINE, version_field, count_field, rewrites_field)
local stored_shape = integer(state[1], F_SHAPE) or 0
local life = lifetime(state[2], state[3])
local shape, version, rewrites = stored_shape, nil, 0
if agent ~= '' then
  version = integer(state[4], version_field)
  rewrites = integer(state[6], rewrites_field) or 0
  local count = integer(state[5], count_field) or 0
  if version then
    shape = bit.bor(shape, count > 0 and SHAPE_AGENTS + SHAPE_MESSAGES or SHAPE_AGENTS)
  end
end
local key = KEYS[index]
local old = redis.call('HGET', key, A.field)
if old then
  -- The record exists, so the key that holds it must stay required.
  shape = bit.bor(shape, index == KEY_AGENTS and SHAPE_AGENTS or index == KEY_MESSAGES and SHAPE_MESSAGES or SHAPE_MULTI)
end
if undeclared_multi(shape) then
  return R_NEEDS_ALL_KEYS
end
if damaged(shape) then
  return R_DAMAGED
end
if not old then
  return 0
end
local value = A.value
if A.keep_created == '1' then
  local created = string.match(old, ',"created_at":("[^"]*")}$')
  if not created then
    return redis.error_reply(E_CORRUPT .. ' stored record has no trailing created_at (key=<' .. key .. '>)')
  end
  value = value .. ',"created_at":' .. created .. '}'
end
if agent ~= '' and fenced(agent, A.token, now_ms()) then
  return R_LOCKED
end
if stale_data_key(A.dek) then
  return R_STALE_DATA_KEY
end
if agent ~= '' and version_conflict(version, A.expected) then
  return repeated_write(version, A.expected, key, A.field, value) or R_CONFLICT
end
redis.call('HSET', key, A.field, value)
if index == KEY_MESSAGES and agent ~= '' then
  -- A stored message rewritten (a redaction): a restore that has read it reads again.
  redis.call('HSET', KEYS[KEY_SESSION], rewrites_field, rewrites + 1)
end
if shape ~= stored_shape then
  redis.call('HSET', KEYS[KEY_SESSION], F_SHAPE, shape)
end
touch(tonumber(A.ttl), true, life)
if agent ~= '' then
  return bump_version(agent)
end
return 1
