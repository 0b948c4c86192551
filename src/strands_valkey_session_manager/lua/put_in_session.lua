-- put_in_session: create an agent (KEYS[2]) or set an orchestrator's state (KEYS[5]), only while
-- the session exists. A record written after its session was deleted would be an orphan no delete
-- could find; an agent that exists is never overwritten (another process created it after this
-- one read that it was missing: overwriting would restart its conversation at message id 0).
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS (2 agents, 5 multi)
-- ARGV[3] field (raw id)   ARGV[4] value (JSON record)
-- Returns, for an agent, its new version, and 1 for an orchestrator; nothing is written when it
-- returns -4 (the session does not exist), -2 (the agent exists: a repeat of this same create
-- after a lost reply returns the version it made instead) or -5 (the session hash counts the
-- agent but its record is gone: a damaged session).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -4
end
if ARGV[2] == '2' then
  local version = redis.call('HGET', KEYS[1], 'v:' .. ARGV[3])
  if version then
    local stored = redis.call('HGET', KEYS[2], ARGV[3])
    if not stored then
      return -5
    end
    if stored == ARGV[4] and version == '1' then
      return 1  -- our own create, repeated after its reply was lost
    end
    return -2
  end
end
check_lifetime()
redis.call('HSET', KEYS[tonumber(ARGV[2])], ARGV[3], ARGV[4])
touch(tonumber(ARGV[1]), true)
if ARGV[2] == '2' then
  return bump_version(ARGV[3])
end
return 1
