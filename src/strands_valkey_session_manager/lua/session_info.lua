-- session_info: what the catalog shows of one session, read in one step.
-- Returns nil when the session does not exist, else
-- {session hash as a flat field/value list, agent ids (raw), remaining lifetime in ms (-1: none)}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HKEYS', KEYS[2]), redis.call('PTTL', KEYS[1])}
