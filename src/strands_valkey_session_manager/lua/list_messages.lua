-- list_messages: one agent's message records in id order, sliced by offset and count, read in
-- bounded steps, so that no call keeps the server busy for long whatever the session's size.
-- ARGV[1] touch: ttl ms to extend the session with (0: the session's), or -1 not to touch
-- ARGV[2] lex min of the agent's members ('[<agent>:')   ARGV[3] lex max ('(<agent>;')
-- ARGV[4] offset   ARGV[5] count (-1 for all)   ARGV[6] agent id (raw)
-- ARGV[7] '' for the first step; a continuation: the last member listed so far
-- ARGV[8] at most this many records returned or members listed (capped at 1000; 0: a continuation
--   lists none, the client names the members itself)
-- ARGV[9] first step: bytes of records after which it stops (default 1 MiB)
-- ARGV[10] continuation: the stamp the first step returned
-- ARGV[11] continuation: how many of the agent's members the client has listed, offset included
-- ARGV[12] continuation: the agent's version as the first step saw it
--
-- First step returns {version, count, stamp, next members, record, record, ...}: the agent's
-- version and count 'n:<agent>', a stamp of what a continuation checks (the session's 'created'
-- and 'nonce', the agent's rewrites 'w:<agent>'), the members the client reads next with HMGET
-- (space-separated: one reply element instead of one per member; '' when the records returned end
-- the slice; '+<last member returned>' when the agent's remaining ids follow it without a gap, so
-- the client names every further member itself and no step lists any), then the records. A continuation, sent after the client's HMGET of the members
-- listed, returns {1, next members} when nothing read so far can have changed since the first
-- step: the same session (not deleted, nor created again: 'created' and 'nonce', and the agent's
-- version not below the first step's: versions only grow within one session), no stored
-- message rewritten (a redaction, an append over an existing id, a re-encryption: each counts in
-- 'w:<agent>'), no message inserted among those listed (the agent's members up to the last one
-- listed are still ARGV[11]); {0, reason} otherwise (the client reads again from the first step).
-- Appends of new messages and writes of the agent's own record change none of these.
-- Both return {-7, reason} when sent without KEYS[5] to a session that has a multi key
-- (undeclared_multi), and {-5, reason} when the session is damaged (nothing is listed): the
-- agent's index entries do not match its count 'n:<agent>' (ZLEXCOUNT of its range), an index
-- entry has no record, or a key the session's shape requires is gone. Error reply 'SVSM-CORRUPT ...' for a
-- garbled field of the session hash; a key of the wrong type is the server's WRONGTYPE error
-- followed by '(key=<the key>)'.
local function on_key(i, reply)
  if type(reply) == 'table' and reply.err then
    error({err = reply.err .. ' (key=<' .. KEYS[i] .. '>)'})
  end
  return reply
end
local version_field, count_field, rewrites_field = F_VERSION .. ARGV[6], F_COUNT .. ARGV[6], F_REWRITES .. ARGV[6]
local state = on_key(KEY_SESSION, redis.pcall(
  'HMGET', KEYS[KEY_SESSION], version_field, count_field, F_SHAPE, F_TTL, F_DEADLINE, F_CREATED, F_NONCE, rewrites_field
))
local version = integer(state[1], version_field)
local stored_count = integer(state[2], count_field) or 0
local shape = integer(state[3], F_SHAPE) or 0
local life = lifetime(state[4], state[5])
local stamp = (state[6] or '') .. ' ' .. (state[7] or '') .. ' ' .. (integer(state[8], rewrites_field) or 0)
local after = ARGV[7] or ''
local continuation = after ~= ''
if continuation and (not version or stamp ~= ARGV[10] or version < tonumber(ARGV[12])) then
  return {0, 'the session was deleted, or a message of the agent rewritten, since the first step'}
end
if version then
  shape = bit.bor(shape, stored_count > 0 and SHAPE_AGENTS + SHAPE_MESSAGES or SHAPE_AGENTS)
end
if undeclared_multi(shape) then
  return {R_NEEDS_ALL_KEYS, 'the session has a multi key: send the script again with all five keys'}
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

local most = math.min(tonumber(ARGV[8] or 1000), 1000)

-- The next members after 'from' (an exclusive lex bound), at most n, as one string.
local function listed(from, n)
  if n <= 0 then
    return ''
  end
  return table.concat(redis.call('ZRANGEBYLEX', KEYS[KEY_ORDER], from, ARGV[3], 'LIMIT', 0, n), ' ')
end

if continuation then
  if redis.call('ZLEXCOUNT', KEYS[KEY_ORDER], ARGV[2], '[' .. after) ~= tonumber(ARGV[11]) then
    return {0, 'a message was inserted among those read'}
  end
  return {1, listed('(' .. after, most)}
end

local budget = tonumber(ARGV[9] or 1048576)
local offset, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local wanted = math.max(stored_count - offset, 0)
if count >= 0 then
  wanted = math.min(wanted, count)
end
local members = on_key(KEY_ORDER, redis.pcall('ZRANGEBYLEX', KEYS[KEY_ORDER], ARGV[2], ARGV[3], 'LIMIT', offset, math.min(wanted, most)))
local reply = {version or 0, stored_count, stamp, ''}
-- Batches of 10 records first, then as many as the records' mean size says still fit the budget
-- (at most 100): a step ends about one record past its budget, whatever the records' sizes.
local bytes, n, batch = 0, 0, 10
while n < #members and bytes < budget do
  local records = on_key(KEY_MESSAGES, redis.pcall('HMGET', KEYS[KEY_MESSAGES], unpack(members, n + 1, math.min(n + batch, #members))))
  for i = 1, #records do
    if not records[i] then
      return {R_DAMAGED, E_MISSING .. ' the order index names ' .. members[n + i] .. ' but ' .. KEYS[KEY_MESSAGES]
        .. ' holds no record for it'}
    end
    reply[#reply + 1] = records[i]
    bytes = bytes + #records[i]
  end
  n = n + #records
  batch = math.max(1, math.min(100, math.floor((budget - bytes) * n / math.max(bytes, 1))))
end
if n < wanted then
  -- The ids after the last record returned run without a gap to the agent's last one when they
  -- differ by as many as the members left (compared on the last 15 of the 20 digits, exact as Lua
  -- numbers, when the first 5 agree): the client then names the members itself.
  local last = redis.call('ZREVRANGEBYLEX', KEYS[KEY_ORDER], ARGV[3], ARGV[2], 'LIMIT', 0, 1)[1]
  local from, to = string.sub(members[n], -20), string.sub(last, -20)
  if string.sub(from, 1, 5) == string.sub(to, 1, 5)
    and tonumber(string.sub(to, 6)) - tonumber(string.sub(from, 6)) == stored_count - offset - n then
    reply[4] = '+' .. members[n]
  else
    -- As many as fit the budget at the mean size of the records read.
    reply[4] = listed('(' .. members[n], math.min(wanted - n, most, math.max(1, math.floor(budget * n / math.max(bytes, 1)))))
  end
end
local ttl = tonumber(ARGV[1])
if ttl >= 0 and redis.call('EXISTS', KEYS[KEY_SESSION]) == 1 then
  touch(ttl, false, life)
end
return reply
