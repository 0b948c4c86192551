-- Prelude of every session script (prepended by _lua.py).
-- KEYS[1..5] are always the session's keys: 1 session hash, 2 agents, 3 messages, 4 order, 5 multi.
-- Lifetime lives in the session hash: 'ttl' (sliding, ms) and 'deadline' (absolute, unix ms).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Give all five keys the same expiry: now + ttl (the caller's, else the session's stored one),
-- capped by the deadline; with neither, the session hash's current expiry, so keys created later
-- (the first message, the first orchestrator) never outlive or predecease the rest of the session.
local function expire_session(now, ttl_ms, stored_ttl, deadline)
  if ttl_ms <= 0 then
    ttl_ms = tonumber(stored_ttl or '0')
  end
  local at = 0
  if ttl_ms > 0 then
    at = now + ttl_ms
  end
  deadline = tonumber(deadline or '0')
  if deadline > 0 and (at == 0 or deadline < at) then
    at = deadline
  end
  if at == 0 then
    at = redis.call('PEXPIRETIME', KEYS[1])
  end
  if at > 0 then
    for i = 1, 5 do
      redis.call('PEXPIREAT', KEYS[i], at)
    end
  end
end

-- Lifetime fields hold integers (or are absent). A script checks them before its first write, so
-- a garbled field refuses the whole write instead of failing in touch() after it.
local function lifetime_ok(ttl, deadline)
  return (ttl == false or ttl == nil or tonumber(ttl) ~= nil)
    and (deadline == false or deadline == nil or tonumber(deadline) ~= nil)
end

local function check_lifetime()
  local life = redis.call('HMGET', KEYS[1], 'ttl', 'deadline')
  if not lifetime_ok(life[1], life[2]) then
    error({err = 'SVSM-CORRUPT the ttl or deadline field of the session hash is not a number (key=<' .. KEYS[1] .. '>)'})
  end
end

-- expire_session after a write (stamp: record its time in 'updated') or a touching read.
local function touch(ttl_ms, stamp)
  local now = now_ms()
  if stamp then
    redis.call('HSET', KEYS[1], 'updated', now)
  end
  local life = redis.call('HMGET', KEYS[1], 'ttl', 'deadline')
  expire_session(now, ttl_ms, life[1], life[2])
end

-- Per-agent version, in the session hash field 'v:<agent id>'; every write to an agent bumps it.
-- A writer that passes the version it last saw (expected ~= '') is refused when another writer
-- has moved it on: check before writing, bump after.
local function version_conflict(agent_id, expected)
  if expected == '' then
    return false
  end
  return tonumber(redis.call('HGET', KEYS[1], 'v:' .. agent_id) or '0') ~= tonumber(expected)
end

-- A repeated write (its first reply was lost) finds its own record and the version it made:
-- report that version again instead of a conflict.
local function repeated_write(agent_id, expected, key, field, value)
  if expected == '' or redis.call('HGET', key, field) ~= value then
    return false
  end
  local current = tonumber(redis.call('HGET', KEYS[1], 'v:' .. agent_id) or '0')
  if current == tonumber(expected) + 1 then
    return current
  end
  return false
end

-- Exclusive ownership (lock=True): while a live lease 'lease:<agent id>' = '<token> <expires ms>
-- <owner>' exists, only writes carrying its fencing token are admitted; an expired lease admits all.
local function fenced(agent_id, token, now)
  local lease = redis.call('HGET', KEYS[1], 'lease:' .. agent_id)
  if not lease then
    return false
  end
  local held, expires = string.match(lease, '^(%d+) (%d+) ')
  if tonumber(expires) <= now then
    return false
  end
  return held ~= (token or '')
end

local function bump_version(agent_id)
  return redis.call('HINCRBY', KEYS[1], 'v:' .. agent_id, 1)
end
