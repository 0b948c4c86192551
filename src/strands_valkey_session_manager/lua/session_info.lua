-- session_info: what the catalog shows of one session, read in one step.
-- Returns nil when the session does not exist, else
-- {session hash fields as a flat field/value list without the record itself (the catalog does not
--  need it, and a damaged record must not hide the rest), agent ids (raw), lifetime left in ms (-1: none)}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
local all = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #all, 2 do
  if all[i] ~= 'record' then
    fields[#fields + 1] = all[i]
    fields[#fields + 1] = all[i + 1]
  end
end
return {fields, redis.call('HKEYS', KEYS[2]), redis.call('PTTL', KEYS[1])}
