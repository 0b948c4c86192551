-- list_messages: one agent's message records in id order, sliced by offset and count.
-- Records are returned as JSON arrays of at most 1000 records each, so the client parses a few
-- large strings instead of one reply element per message, and no reply element grows without bound.
-- KEYS[1] order zset
-- KEYS[2] messages hash
-- ARGV[1] lex min of the agent's members ('[<agent>:')
-- ARGV[2] lex max of the agent's members ('(<agent>;')
-- ARGV[3] offset
-- ARGV[4] count (-1 for all)
-- Returns a list of strings, each '[<record>,<record>,...]'.
-- Error reply 'SVSM-MISSING <member>' when the index names a record that is not stored.
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local chunks = {}
local n = #members
for first = 1, n, 1000 do
  local last = math.min(first + 999, n)
  local records = redis.call('HMGET', KEYS[2], unpack(members, first, last))
  for i = 1, #records do
    if not records[i] then
      return redis.error_reply('SVSM-MISSING ' .. members[first + i - 1])
    end
  end
  chunks[#chunks + 1] = '[' .. table.concat(records, ',') .. ']'
end
return chunks
