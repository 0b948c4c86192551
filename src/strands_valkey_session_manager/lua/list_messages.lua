-- list_messages: one agent's message records in id order, sliced by offset and count.
-- Records come back as JSON arrays of at most 100 records each, so the client parses a few large
-- strings instead of one reply element per message, and no reply element grows without bound.
-- ARGV[1] touch: ttl ms to extend the session with (0: the session's), or -1 not to touch
-- ARGV[2] lex min of the agent's members ('[<agent>:')   ARGV[3] lex max ('(<agent>;')
-- ARGV[4] offset   ARGV[5] count (-1 for all)   ARGV[6] agent id (raw)
-- Returns {agent version, '[<record>,<record>,...]', ...}: the version the listed records belong to.
-- Error reply 'SVSM-MISSING <member>' when the index names a record that is not stored; a key of
-- the wrong type is the server's WRONGTYPE error followed by '(key=<the key>)'.
-- A key of the wrong type: the server's error names no key, so the reply names it ('(key=<...>)').
local function on_key(i, reply)
  if type(reply) == 'table' and reply.err then
    error({err = reply.err .. ' (key=<' .. KEYS[i] .. '>)'})
  end
  return reply
end
local members = on_key(4, redis.pcall('ZRANGEBYLEX', KEYS[4], ARGV[2], ARGV[3], 'LIMIT', ARGV[4], ARGV[5]))
local chunks = {tonumber(on_key(1, redis.pcall('HGET', KEYS[1], 'v:' .. ARGV[6])) or '0')}
local n = #members
for first = 1, n, 100 do
  local last = math.min(first + 99, n)
  local records = on_key(3, redis.pcall('HMGET', KEYS[3], unpack(members, first, last)))
  for i = 1, #records do
    if not records[i] then
      return redis.error_reply('SVSM-MISSING ' .. members[first + i - 1])
    end
  end
  chunks[#chunks + 1] = '[' .. table.concat(records, ',') .. ']'
end
local ttl = tonumber(ARGV[1])
if ttl >= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  touch(ttl, false)
end
return chunks
