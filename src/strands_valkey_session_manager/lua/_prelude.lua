-- Prelude of every session script: _lua.py puts the definitions a script uses (and those they use)
-- in front of it. Top level: only comments and local definitions (one line, or a function whose
-- 'end' starts a line); comments directly above a definition travel with it.
-- KEYS[1..5] are always the session's keys: 1 session hash, 2 agents, 3 messages, 4 order, 5 multi.
-- The scripts of an agent's operations may be sent with KEYS[1..4] only (see undeclared_multi).
-- Lifetime lives in the session hash: 'ttl' (sliding, ms) and 'deadline' (absolute, unix ms).

-- Shared names: the mirror of _schema.py, same names and values (tests/test_schema.py parses these
-- lines and compares). Scripts use them, never the literal field names, KEYS positions or codes.
-- KEYS positions
local KEY_SESSION = 1
local KEY_AGENTS = 2
local KEY_MESSAGES = 3
local KEY_ORDER = 4
local KEY_MULTI = 5
-- Fields of the session hash (F_VERSION .. F_REWRITES: prefixes of per-agent fields, then the raw agent id)
local F_RECORD = 'record'
local F_CREATED = 'created'
local F_UPDATED = 'updated'
local F_TTL = 'ttl'
local F_DEADLINE = 'deadline'
local F_USER = 'user'
local F_TAGS = 'tags'
local F_CATALOG = 'catalog'
local F_EXPIRY = 'expiry'
local F_SHAPE = 'shape'
local F_DEK = 'dek'
local F_NONCE = 'nonce'
local F_VERSION = 'v:'
local F_COUNT = 'n:'
local F_LEASE = 'lease:'
local F_FENCE = 'fence:'
local F_REWRITES = 'w:'
-- Bits of the field 'shape' (see required_keys below)
local SHAPE_AGENTS = 1
local SHAPE_MESSAGES = 2
local SHAPE_MULTI = 4
-- Return codes of the write scripts (nothing is written when they return one)
local R_CONFLICT = -1
local R_AGENT_EXISTS = -2
local R_LOCKED = -3
local R_SESSION_GONE = -4
local R_DAMAGED = -5
local R_STALE_DATA_KEY = -6
local R_NEEDS_ALL_KEYS = -7
-- create_session.lua, lease.lua, swap_session.lua (see each script)
local R_CREATE_EXISTS_LISTED = 0
local R_CREATE_EXISTS = -1
local R_CREATE_LEFTOVERS = -2
local R_LEASE_NO_SESSION = 0
local R_LEASE_HELD = -1
local R_SWAP_NOT_STAGED = -1
-- Prefixes of error replies and damage reports
local E_CORRUPT = 'SVSM-CORRUPT'
local E_DAMAGED = 'SVSM-DAMAGED'
local E_MISSING = 'SVSM-MISSING'

-- Named arguments: a script with many arguments takes ARGV as name/value pairs, read once into a
-- table (A.<name>; a name the caller did not send reads as nil). _schema.SCRIPT_ARGS lists each
-- such script's names. append_message and list_messages, the hot paths, keep positional ARGV:
-- measured, the table costs them about 1-2 us of server time per call (10-15%).
local function named_args()
  local a = {}
  for i = 1, #ARGV, 2 do
    a[ARGV[i]] = ARGV[i + 1]
  end
  return a
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Give all five keys (KEYS[5] when declared) the same expiry: now + ttl (the caller's, else the
-- session's stored one), capped by the deadline; with neither, the session hash's current expiry,
-- so keys created later (the first message, the first orchestrator) never outlive or predecease the
-- rest of the session.
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
    at = redis.call('PEXPIRETIME', KEYS[KEY_SESSION])
  end
  if at > 0 then
    for i = KEY_SESSION, KEY_MULTI do
      if KEYS[i] then -- KEYS[5] left out (undeclared_multi): the session has no multi key
        redis.call('PEXPIREAT', KEYS[i], at)
      end
    end
  end
end

-- A script reads and checks every field it relies on before its first write, so a garbled field
-- refuses the whole write (error reply 'SVSM-CORRUPT ...', naming the field and key) instead of
-- failing half way through it. Checks run again in a repeat, so a refused write stays refused.
local function corrupt(what)
  error({err = E_CORRUPT .. ' ' .. what})
end

-- An integer field of the session hash (a version, a count, a lifetime, 'shape'): its number, or
-- nil when absent. Digits only (an optional minus), at most 15 of them: exact as a Lua number.
local function integer(value, field)
  if not value then
    return nil
  end
  if not string.match(value, '^%-?%d+$') or #value > 16 then
    corrupt('field ' .. field .. ' of ' .. KEYS[KEY_SESSION] .. ' is not an integer')
  end
  return tonumber(value)
end

-- The session's lifetime fields {ttl, deadline}, checked (read them before the first write).
local function lifetime(ttl, deadline)
  integer(ttl, F_TTL)
  integer(deadline, F_DEADLINE)
  return {ttl, deadline}
end

local function read_lifetime()
  local life = redis.call('HMGET', KEYS[KEY_SESSION], F_TTL, F_DEADLINE)
  return lifetime(life[1], life[2])
end

-- expire_session after a write (stamp: record its time in 'updated') or a touching read; life is
-- what read_lifetime returned before the script's first write (read now when nil).
local function touch(ttl_ms, stamp, life)
  life = life or read_lifetime()
  local now = now_ms()
  if stamp then
    redis.call('HSET', KEYS[KEY_SESSION], F_UPDATED, now)
  end
  expire_session(now, ttl_ms, life[1], life[2])
end

-- Damaged sessions. Eviction (allkeys-lru, volatile-lru with a ttl) or a DEL can remove some keys
-- of a session and keep others. The session hash field 'shape' records which of the other keys
-- must exist, one bit each, set by the write that first creates them and never cleared (nothing
-- removes an agent, message or orchestrator alone): 1 agents, 2 messages and order, 4 multi.
-- A write ORs in what it knows itself (its agent exists, it has messages), so sessions written
-- before 'shape' existed are covered from their next write on.
-- (No table of bits to keys: building nested tables on every call costs more than the checks.)

-- An agent's write or restore may be sent without the multi key KEYS[5]: while a cluster moves the
-- session's slot to another node, a script that declares a key the source node lacks is refused
-- (TRYAGAIN) until the whole slot has moved, and an agent-only session never has a multi key. Sent
-- so, a script must return R_NEEDS_ALL_KEYS before its first write when the shape says the session
-- has one (the caller sends it again with all five), so KEYS[5] is read or expired only declared.
local function undeclared_multi(shape)
  return not KEYS[KEY_MULTI] and bit.band(shape, SHAPE_MULTI) ~= 0
end

-- Indexes in KEYS of the keys the shape requires.
local function required_keys(shape)
  local wanted = {}
  if bit.band(shape, SHAPE_AGENTS) ~= 0 then
    wanted[#wanted + 1] = KEY_AGENTS
  end
  if bit.band(shape, SHAPE_MESSAGES) ~= 0 then
    wanted[#wanted + 1] = KEY_MESSAGES
    wanted[#wanted + 1] = KEY_ORDER
  end
  if bit.band(shape, SHAPE_MULTI) ~= 0 then
    wanted[#wanted + 1] = KEY_MULTI
  end
  return wanted
end

-- True when a key the shape requires is gone: one EXISTS over the required keys.
local function damaged(shape)
  if shape == SHAPE_AGENTS + SHAPE_MESSAGES then
    -- Every append after an agent's first message: the same check without building tables.
    return redis.call('EXISTS', KEYS[KEY_AGENTS], KEYS[KEY_MESSAGES], KEYS[KEY_ORDER]) < 3
  end
  local wanted = required_keys(shape)
  if #wanted == 0 then
    return false
  end
  local others = {}
  for i = 2, #wanted do
    others[i - 1] = KEYS[wanted[i]]
  end
  return redis.call('EXISTS', KEYS[wanted[1]], unpack(others)) < #wanted
end

-- The required keys that are gone, by name (only once damaged() said some are).
local function missing_keys(shape)
  local gone = {}
  for _, index in ipairs(required_keys(shape)) do
    if redis.call('EXISTS', KEYS[index]) == 0 then
      gone[#gone + 1] = KEYS[index]
    end
  end
  return gone
end

-- Per-agent version, in the session hash field 'v:<agent id>' (present iff the agent exists);
-- every write to an agent bumps it. A writer that passes the version it last saw (expected ~= '')
-- is refused when another writer has moved it on: check before writing, bump after. version is
-- the agent's current version as the script read (and checked) it, nil when absent.
local function version_conflict(version, expected)
  return expected ~= '' and (version or 0) ~= tonumber(expected)
end

-- A repeated write (its first reply was lost) finds its own record and the version it made:
-- report that version again instead of a conflict.
local function repeated_write(version, expected, key, field, value)
  if expected == '' or redis.call('HGET', key, field) ~= value then
    return false
  end
  if (version or 0) == tonumber(expected) + 1 then
    return version
  end
  return false
end

-- Exclusive ownership (lock=True): while a live lease 'lease:<agent id>' = '<token> <expires ms>
-- <owner>' exists, only writes carrying its fencing token are admitted; an expired lease admits all.
local function parse_lease(lease, agent_id)
  local held, expires, owner = string.match(lease, '^(%d+) (%d+) (.*)$')
  if not held or #expires > 16 then
    corrupt('field ' .. F_LEASE .. agent_id .. ' of ' .. KEYS[KEY_SESSION] .. ' is not "<token> <expires ms> <owner>"')
  end
  return held, tonumber(expires), owner
end

-- lease: the field 'lease:<agent id>' as the script read it (nil when absent).
local function fenced_by(lease, agent_id, token, now)
  if not lease then
    return false
  end
  local held, expires = parse_lease(lease, agent_id)
  if expires <= now then
    return false
  end
  return held ~= (token or '')
end

local function fenced(agent_id, token, now)
  return fenced_by(redis.call('HGET', KEYS[KEY_SESSION], F_LEASE .. agent_id), agent_id, token, now)
end

-- Encrypted writes name the wrapped data key their record was sealed under (the session hash field
-- 'dek' as the writer read it): when the session holds another one by then (re-encrypted, or
-- deleted and created again, by another process), the record would open under no key the session
-- has, so the write is refused (-6) and the writer seals it again under the current key.
-- expected '' or absent: not checked (plaintext or compressed-only records, older callers).
local function stale_data_key(expected)
  return expected ~= nil and expected ~= '' and redis.call('HGET', KEYS[KEY_SESSION], F_DEK) ~= expected
end

local function bump_version(agent_id)
  return redis.call('HINCRBY', KEYS[KEY_SESSION], F_VERSION .. agent_id, 1)
end
