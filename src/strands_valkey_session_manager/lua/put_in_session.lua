-- put_in_session: set a field of a session hash, only while the session exists.
-- Used for agents and orchestrator state: a record written after its session was deleted would
-- leave an orphan that no delete can find.
-- KEYS[1] session record key (string)
-- KEYS[2] hash to write (agents or multi)
-- ARGV[1] field (raw agent or orchestrator id)
-- ARGV[2] value (JSON record)
-- Returns 1 when written, 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
