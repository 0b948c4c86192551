-- put_in_session: create an agent (KEYS[2]) or set an orchestrator's state (KEYS[5]), only while
-- the session exists. A record written after its session was deleted would be an orphan no delete
-- could find; an agent or orchestrator that exists is never overwritten (another process created it after this
-- one read that it was missing: overwriting would restart its conversation at message id 0).
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS (2 agents, 5 multi)
-- ARGV[3] field (raw id)   ARGV[4] value (JSON record)
-- ARGV[5] the wrapped data key the record was sealed under ('' or absent: not checked); -6 when
--   the session holds another one (see stale_data_key in _prelude.lua)
-- Returns, for an agent, its new version, and 1 for an orchestrator. Nothing is written when it
-- returns -4 (the session does not exist), -2 (the agent or orchestrator exists; a repeat of this
-- same create after a lost reply, which finds its own record (an agent's at version 1), returns 1
-- instead), -5 (the session
-- is damaged: a key its shape requires, or the agent's record, is gone), -7 (an agent's create sent
-- without KEYS[5] to a session that has a multi key: undeclared_multi), or on an error reply
-- 'SVSM-CORRUPT' (a field of the session hash is garbled).
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  return R_SESSION_GONE
end
local is_agent = tonumber(ARGV[2]) == KEY_AGENTS
local version_field = F_VERSION .. ARGV[3]
local state = redis.call('HMGET', KEYS[KEY_SESSION], F_SHAPE, F_TTL, F_DEADLINE, version_field)
local stored_shape = integer(state[1], F_SHAPE) or 0
local life = lifetime(state[2], state[3])
local shape = stored_shape
if undeclared_multi(shape) then
  return R_NEEDS_ALL_KEYS
end
if is_agent then
  local version = integer(state[4], version_field)
  if version then
    -- The agent exists (or its record is gone: damaged). Only the record of a repeat of our own
    -- create equals ours; it is read only here, so the usual create reads no record.
    shape = bit.bor(shape, 1)
    local stored = redis.call('HGET', KEYS[KEY_AGENTS], ARGV[3])
    if not stored or damaged(shape) then
      return R_DAMAGED
    end
    if stored == ARGV[4] and version == 1 then
      return 1  -- our own create, repeated after its reply was lost
    end
    return R_AGENT_EXISTS
  end
  if damaged(shape) then
    return R_DAMAGED
  end
  if redis.call('HEXISTS', KEYS[KEY_AGENTS], ARGV[3]) == 1 then
    return R_AGENT_EXISTS  -- a record without a version: not ours to replace either
  end
else
  if damaged(shape) then
    return R_DAMAGED
  end
  -- An orchestrator that exists is never replaced either (another process created it and may have
  -- run nodes since); the same record is a repeat of our own create after a lost reply.
  local stored = redis.call('HGET', KEYS[KEY_MULTI], ARGV[3])
  if stored then
    if stored == ARGV[4] then
      return 1
    end
    return R_AGENT_EXISTS
  end
end
if stale_data_key(ARGV[5]) then
  return R_STALE_DATA_KEY
end
redis.call('HSET', KEYS[tonumber(ARGV[2])], ARGV[3], ARGV[4])
shape = bit.bor(shape, is_agent and SHAPE_AGENTS or SHAPE_MULTI)
if shape ~= stored_shape then
  redis.call('HSET', KEYS[KEY_SESSION], F_SHAPE, shape)
end
touch(tonumber(ARGV[1]), true, life)
if is_agent then
  return bump_version(ARGV[3])
end
return 1
