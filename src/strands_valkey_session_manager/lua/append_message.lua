-- append_message: store one message record and index it, in one atomic step.
-- Overwrites a record with the same id (the SDK reuses message ids); such an overwrite also counts
-- in the agent's rewrites 'w:<agent id>', which a restore read in steps checks (list_messages.lua).
-- The hot path: one read of the session hash gives the agent's version (present iff the agent
-- exists), its message count and rewrites, the session's shape, lifetime and the agent's lease;
-- one EXISTS checks the keys the shape requires; one write stores version, count and time of this
-- write. A session without lifetime whose keys all exist already skips the expiry step: this write
-- creates no key that could disagree. So an append runs six commands (HMGET, EXISTS, TIME, HSET,
-- ZADD, HSET); each redis.call costs about 1-2 us of server time beyond the command itself, which
-- is most of this script's time: add none to the hot path. _lua.py sends only the prelude
-- definitions this script uses (the whole chunk runs on every call).
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] agent id (raw)
-- ARGV[3] message member (encoded agent id ':' 20-digit id)   ARGV[4] message record (JSON)
-- ARGV[5] the agent version the writer last saw ('' not to check)
-- ARGV[6] the writer's lease token ('' or absent: none)
-- ARGV[7] the wrapped data key the record was sealed under ('' or absent: not checked); -6 when
--   the session holds another one (see stale_data_key in _prelude.lua)
-- Returns the agent's new version; 0 when the agent does not exist; -1 when the version moved on;
-- -3 when another owner holds the agent's lease; -4 when the session does not exist; -5 when the
-- session is damaged (a key its shape requires is gone: eviction, a DEL); -7 when sent without
-- KEYS[5] to a session that has a multi key (undeclared_multi). Nothing is written in those cases,
-- nor on an error reply 'SVSM-CORRUPT' (a field of the session hash is garbled).
local version_field, count_field, rewrites_field = F_VERSION .. ARGV[2], F_COUNT .. ARGV[2], F_REWRITES .. ARGV[2]
local state = redis.call(
  'HMGET', KEYS[KEY_SESSION], version_field, count_field, F_SHAPE, F_TTL, F_DEADLINE, F_LEASE .. ARGV[2], rewrites_field
)
if not state[1] then
  -- The failure path only: tell a vanished session from a missing agent.
  if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
    return R_SESSION_GONE
  end
  return 0
end
local version = integer(state[1], version_field)
local stored_count = integer(state[2], count_field) or 0
local stored_shape = integer(state[3], F_SHAPE) or 0
local stored_ttl, deadline = state[4], state[5]
integer(stored_ttl, F_TTL)
integer(deadline, F_DEADLINE)
local rewrites = integer(state[7], rewrites_field) or 0
-- The agent exists, and its messages when it has some.
local shape = bit.bor(stored_shape, stored_count > 0 and SHAPE_AGENTS + SHAPE_MESSAGES or SHAPE_AGENTS)
if undeclared_multi(shape) then
  return R_NEEDS_ALL_KEYS
end
if damaged(shape) then
  return R_DAMAGED
end
local now = now_ms()
if fenced_by(state[6], ARGV[2], ARGV[6], now) then
  return R_LOCKED
end
if stale_data_key(ARGV[7]) then
  return R_STALE_DATA_KEY
end
if version_conflict(version, ARGV[5]) then
  return repeated_write(version, ARGV[5], KEYS[KEY_MESSAGES], ARGV[3], ARGV[4]) or R_CONFLICT
end
redis.call('HSET', KEYS[KEY_MESSAGES], ARGV[3], ARGV[4])
local added = redis.call('ZADD', KEYS[KEY_ORDER], 0, ARGV[3])
local count = stored_count + added
if added == 0 then
  -- An existing message replaced: a restore that has read it reads again.
  redis.call('HSET', KEYS[KEY_SESSION], rewrites_field, rewrites + 1)
end
shape = bit.bor(shape, SHAPE_AGENTS + SHAPE_MESSAGES)
if shape ~= stored_shape then
  redis.call('HSET', KEYS[KEY_SESSION], version_field, version + 1, count_field, count, F_UPDATED, now, F_SHAPE, shape)
else
  redis.call('HSET', KEYS[KEY_SESSION], version_field, version + 1, count_field, count, F_UPDATED, now)
end
local ttl_ms = tonumber(ARGV[1])
if ttl_ms > 0 or stored_ttl or deadline or shape ~= stored_shape then
  expire_session(now, ttl_ms, stored_ttl, deadline)
end
return version + 1
