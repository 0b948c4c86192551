-- put_in_session: set a field of the agents or multi hash, only while the session exists.
-- A record written after its session was deleted would be an orphan no delete could find.
-- ARGV[1] ttl ms (0: the session's)   ARGV[2] index of the hash in KEYS (2 agents, 5 multi)
-- ARGV[3] field (raw id)   ARGV[4] value (JSON record)
-- Returns 0 when the session does not exist (nothing is written then); else, for an agent, its new
-- version, and 1 for an orchestrator.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[tonumber(ARGV[2])], ARGV[3], ARGV[4])
touch(tonumber(ARGV[1]), true)
if ARGV[2] == '2' then
  return bump_version(ARGV[3])
end
return 1
