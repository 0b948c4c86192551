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
local version_field, count_field = 'v:' .. ARGV[6], 'n:' .. ARGV[6]
local state = on_key(1, redis.pcall('HMGET', KEYS[1], version_field, count_field, 'shape', 'ttl', 'deadline'))
local version = integer(state[1], version_field)
local stored_count = integer(state[2], count_field) or 0
local shape = integer(state[3], 'shape') or 0
local life = lifetime(state[4], state[5])
if version then
  shape = bit.bor(shape, stored_count > 0 and 3 or 1)
end
if damaged(shape) then
  return {-5, 'SVSM-DAMAGED keys of the session are gone: ' .. table.concat(missing_keys(shape), ', ')}
end
local indexed = on_key(4, redis.pcall('ZLEXCOUNT', KEYS[4], ARGV[2], ARGV[3]))
if indexed ~= stored_count then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {-5, 'SVSM-DAMAGED the session hash ' .. KEYS[1] .. ' is gone, the order index ' .. KEYS[4]
      .. ' still holds ' .. indexed .. ' messages of the agent'}
  end
  return {-5, 'SVSM-DAMAGED the session hash counts ' .. stored_count .. ' messages of the agent (field '
    .. count_field .. ' of ' .. KEYS[1] .. '), the order index ' .. KEYS[4] .. ' holds ' .. indexed}
end
local members = on_key(4, redis.pcall('ZRANGEBYLEX', KEYS[4], ARGV[2], ARGV[3], 'LIMIT', ARGV[4], ARGV[5]))
local chunks = {version or 0}
local n = #members
for first = 1, n, 100 do
  local last = math.min(first + 99, n)
  local records = on_key(3, redis.pcall('HMGET', KEYS[3], unpack(members, first, last)))
  for i = 1, #records do
    if not records[i] then
      return {-5, 'SVSM-MISSING the order index names ' .. members[first + i - 1] .. ' but ' .. KEYS[3]
        .. ' holds no record for it'}
    end
  end
  chunks[#chunks + 1] = '[' .. table.concat(records, ',') .. ']'
end
local ttl = tonumber(ARGV[1])
if ttl >= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  touch(ttl, false, life)
end
return chunks
