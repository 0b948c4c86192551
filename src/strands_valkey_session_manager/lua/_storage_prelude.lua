-- Shared head of the storage_* scripts (prepended by storage.py's loader).
-- KEYS[2] and, when given, KEYS[3] are index zsets: refuse to touch anything when one of them holds
-- another type, so a script fails before its first write and never leaves half an update.
for i = 2, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    return redis.error_reply('SVSM-WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. kind .. ', not a sorted set')
  end
end
