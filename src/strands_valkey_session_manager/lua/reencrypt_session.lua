-- reencrypt_session: swap a session's records for their re-encryption under a new data key, and its
-- wrapped data key (field 'dek') for the new one, only if nothing changed since the caller read them.
-- ARGV: name/value pairs (named_args in the prelude):
--   fingerprint: of the agents, messages and multi hashes as read (see digest() below),
--   dek: the wrapped data key read ('' for none), new_dek: the new wrapped data key,
--   agents, messages, multi: the new records of those hashes, each packed as
--     '<field length>:<field><value length>:<value>' repeated, so the argument count is fixed
--     whatever the size of the session.
-- Error reply 'SVSM-CORRUPT ...' (nothing written) when an agent's version field is garbled.
-- Returns -4 when the session does not exist, 0 when a record or the data key changed since the
-- read (nothing is written then: the caller reads again), 1 when swapped. A swap also bumps every
-- agent's version 'v:<agent id>' and its rewrites 'w:<agent id>' (a restore read in steps reads
-- again), so a writer checking versions that still holds the old data key
-- is refused (a conflict) instead of writing a record under a key the session no longer has.

-- A hash's content as one digest, independent of field order: the sorted SHA-1s of
-- '<field length>:<field><value>', hashed again.
local function digest(key)
  local all = redis.call('HGETALL', key)
  local each = {}
  for i = 1, #all, 2 do
    each[#each + 1] = redis.sha1hex(#all[i] .. ':' .. all[i] .. all[i + 1])
  end
  table.sort(each)
  return redis.sha1hex(table.concat(each))
end

local function store(key, packed)
  local pos, size = 1, #packed
  while pos <= size do
    local colon = string.find(packed, ':', pos, true)
    local stop = colon + tonumber(string.sub(packed, pos, colon - 1))
    local field = string.sub(packed, colon + 1, stop)
    colon = string.find(packed, ':', stop + 1, true)
    pos = colon + tonumber(string.sub(packed, stop + 1, colon - 1)) + 1
    redis.call('HSET', key, field, string.sub(packed, colon + 1, pos - 1))
  end
end

local A = named_args()
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  return R_SESSION_GONE
end
if (redis.call('HGET', KEYS[KEY_SESSION], F_DEK) or '') ~= A.dek then
  return 0
end
if digest(KEYS[KEY_AGENTS]) .. digest(KEYS[KEY_MESSAGES]) .. digest(KEYS[KEY_MULTI]) ~= A.fingerprint then
  return 0
end
-- Every version is checked before the first write: a garbled one refuses the whole swap.
local agent_ids = redis.call('HKEYS', KEYS[KEY_AGENTS])
for _, agent_id in ipairs(agent_ids) do
  integer(redis.call('HGET', KEYS[KEY_SESSION], F_VERSION .. agent_id), F_VERSION .. agent_id)
  integer(redis.call('HGET', KEYS[KEY_SESSION], F_REWRITES .. agent_id), F_REWRITES .. agent_id)
end
store(KEYS[KEY_AGENTS], A.agents)
store(KEYS[KEY_MESSAGES], A.messages)
store(KEYS[KEY_MULTI], A.multi)
redis.call('HSET', KEYS[KEY_SESSION], F_DEK, A.new_dek)
for _, agent_id in ipairs(agent_ids) do
  redis.call('HINCRBY', KEYS[KEY_SESSION], F_VERSION .. agent_id, 1)
  redis.call('HINCRBY', KEYS[KEY_SESSION], F_REWRITES .. agent_id, 1)
end
return 1
