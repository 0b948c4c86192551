-- Shared head of the storage_* scripts (prepended by _lua.py): the search index of one group.
-- A group's index (when the storage indexes it) is, beside its value keys:
--   <docs>           hash  <R> -> "<length> <term> <term> ...": the terms a value is posted under
--   <postings><term> zset  <R> scored by the term's count in the value (0: only in the key's name)
-- Posting keys are built here from the <postings> prefix, which carries the group's hash tag: they
-- are in the slot of the keys passed in KEYS, as a cluster requires.
local function unpost(docs, postings, rest)
  local old = redis.call('HGET', docs, rest)
  if not old then
    return
  end
  local first = true
  for word in string.gmatch(old, '%S+') do
    if first then
      first = false
    else
      redis.call('ZREM', postings .. word, rest)
    end
  end
  redis.call('HDEL', docs, rest)
end

local function post(docs, postings, rest, terms)
  -- terms: "<length> <term> <count> <term> <count> ..."
  local listed = {}
  local length = nil
  local term = nil
  for word in string.gmatch(terms, '%S+') do
    if length == nil then
      length = word
    elseif term == nil then
      term = word
    else
      redis.call('ZADD', postings .. term, tonumber(word), rest)
      listed[#listed + 1] = term
      term = nil
    end
  end
  redis.call('HSET', docs, rest, length .. ' ' .. table.concat(listed, ' '))
end
