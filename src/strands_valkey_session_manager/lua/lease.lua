-- lease: exclusive ownership of one agent (lock=True), with a fencing token.
-- The lease is the session hash field 'lease:<agent id>' = '<token> <expires ms> <owner>'; tokens
-- come from 'fence:<agent id>' and only ever grow, so a writer whose lease was taken over after it
-- expired is refused by the write scripts (see fenced() in the prelude).
-- ARGV[1] agent id   ARGV[2] owner id   ARGV[3] lease time ms   ARGV[4] 'acquire' | 'renew' | 'release'
-- ARGV[5] the owner's token (renew, release)
-- Returns {token} on success ({1} for release); {0} when the session does not exist;
-- {-1, holder, ms left} when another owner holds a live lease (or, for renew, ours was lost).
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  return {R_LEASE_NO_SESSION}
end
local field = F_LEASE .. ARGV[1]
local now = now_ms()
local held = redis.call('HMGET', KEYS[KEY_SESSION], field, F_FENCE .. ARGV[1])
local lease = held[1]
-- Both fields are checked before the first write (error reply 'SVSM-CORRUPT ...' when garbled).
integer(held[2], F_FENCE .. ARGV[1])
local token, expires, owner = nil, 0, ''
if lease then
  token, expires, owner = parse_lease(lease, ARGV[1])
end
local live = lease and expires > now
if ARGV[4] == 'release' then
  if lease and owner == ARGV[2] and token == ARGV[5] then
    redis.call('HDEL', KEYS[KEY_SESSION], field)
  end
  return {1}
end
if ARGV[4] == 'renew' then
  if not (lease and owner == ARGV[2] and token == ARGV[5]) then
    return {R_LEASE_HELD, owner, live and (expires - now) or 0}
  end
elseif live and owner ~= ARGV[2] then
  return {R_LEASE_HELD, owner, expires - now}
else
  token = tostring(redis.call('HINCRBY', KEYS[KEY_SESSION], F_FENCE .. ARGV[1], 1))
end
redis.call('HSET', KEYS[KEY_SESSION], field, token .. ' ' .. (now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])
return {tonumber(token)}
