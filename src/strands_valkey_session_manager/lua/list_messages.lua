-- list_messages: one agent's message records in id order, sliced by offset and count.
-- Records come back as JSON arrays of at most 100 records each, so the client parses a few large
-- strings instead of one reply element per message, and no reply element grows without bound.
-- ARGV[1] touch: ttl ms to extend the session with (0: the session's), or -1 not to touch
-- ARGV[2] lex min of the agent's members ('[<agent>:')   ARGV[3] lex max ('(<agent>;')
-- ARGV[4] offset   ARGV[5] count (-1 for all)   ARGV[6] agent id (raw)
-- Returns {agent version, '[<record>,<record>,...]', ...}: the version the listed records belong to.
-- Returns {-5, reason} when the session is damaged (nothing is listed): the agent's index entries
-- do not match its count 'n:<agent>' (ZLEXCOUNT of its range), an index entry has no record, or a
-- key the session's shape requires is gone. Error reply 'SVSM-CORRUPT ...' for a garbled field of
-- the session hash; a key of the wrong type is the server's WRONGTYPE error followed by
-- '(key=<the key>)'.
-- A key of the wrong type: the server's error names no key, so the reply names it ('(key=<...>)').
local function on_key(i, reply)
  if type(reply) == 'table' and reply.err then
    error({err = reply.err .. ' (key=<' .. KEYS[i] .. '>)'})
  end
  return reply
end
local version_field, count_field = F_VERSION .. ARGV[6], F_COUNT .. ARGV[6]
local state = on_key(KEY_SESSION, redis.pcall('HMGET', KEYS[KEY_SESSION], version_field, count_field, F_SHAPE, F_TTL, F_DEADLINE))
local version = integer(state[1], version_field)
local stored_count = integer(state[2], count_field) or 0
local shape = integer(state[3], F_SHAPE) or 0
local life = lifetime(state[4], state[5])
if version then
  shape = bit.bor(shape, stored_count > 0 and SHAPE_AGENTS + SHAPE_MESSAGES or SHAPE_AGENTS)
end
if damaged(shape) then
  return {R_DAMAGED, E_DAMAGED .. ' keys of the session are gone: ' .. table.concat(missing_keys(shape), ', ')}
end
local indexed = on_key(KEY_ORDER, redis.pcall('ZLEXCOUNT', KEYS[KEY_ORDER], ARGV[2], ARGV[3]))
if indexed ~= stored_count then
  if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
    return {R_DAMAGED, E_DAMAGED .. ' the session hash ' .. KEYS[KEY_SESSION] .. ' is gone, the order index ' .. KEYS[KEY_ORDER]
      .. ' still holds ' .. indexed .. ' messages of the agent'}
  end
  return {R_DAMAGED, E_DAMAGED .. ' the session hash counts ' .. stored_count .. ' messages of the agent (field '
    .. count_field .. ' of ' .. KEYS[KEY_SESSION] .. '), the order index ' .. KEYS[KEY_ORDER] .. ' holds ' .. indexed}
end
local members = on_key(KEY_ORDER, redis.pcall('ZRANGEBYLEX', KEYS[KEY_ORDER], ARGV[2], ARGV[3], 'LIMIT', ARGV[4], ARGV[5]))
local chunks = {version or 0}
local n = #members
for first = 1, n, 100 do
  local last = math.min(first + 99, n)
  local records = on_key(KEY_MESSAGES, redis.pcall('HMGET', KEYS[KEY_MESSAGES], unpack(members, first, last)))
  for i = 1, #records do
    if not records[i] then
      return {R_DAMAGED, E_MISSING .. ' the order index names ' .. members[first + i - 1] .. ' but ' .. KEYS[KEY_MESSAGES]
        .. ' holds no record for it'}
    end
  end
  chunks[#chunks + 1] = '[' .. table.concat(records, ',') .. ']'
end
local ttl = tonumber(ARGV[1])
if ttl >= 0 and redis.call('EXISTS', KEYS[KEY_SESSION]) == 1 then
  touch(ttl, false, life)
end
return chunks
