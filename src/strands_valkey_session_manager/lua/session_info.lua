-- session_info: what the catalog shows of one session, read in one step.
-- Returns nil when no key of the session exists; else
-- {session hash fields as a flat field/value list without the record itself (the catalog does not
--  need it, and a damaged record must not hide the rest), agent ids (raw), lifetime left in ms (-1: none)}
-- or, for a damaged session, {{}, {}, lifetime left in ms, {KEYS index of the damaged key, reason, ...}}:
-- a key of the wrong type (reason: the server's error), or the session hash missing while other keys
-- remain (reason 'missing', then the KEYS index of each leftover key). Damage is reported, never
-- raised, so one damaged session cannot fail a listing of many.
local pttl = redis.call('PTTL', KEYS[KEY_SESSION])
if redis.call('EXISTS', KEYS[KEY_SESSION]) == 0 then
  local damage = {1, 'missing'}
  for i = KEY_AGENTS, KEY_MULTI do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      damage[#damage + 1] = i
    end
  end
  if #damage == 2 then
    return nil
  end
  return {{}, {}, pttl, damage}
end
local all = redis.pcall('HGETALL', KEYS[KEY_SESSION])
if all.err then
  return {{}, {}, pttl, {1, all.err}}
end
local agents = redis.pcall('HKEYS', KEYS[KEY_AGENTS])
if agents.err then
  return {{}, {}, pttl, {2, agents.err}}
end
local fields = {}
for i = 1, #all, 2 do
  if all[i] ~= F_RECORD then
    fields[#fields + 1] = all[i]
    fields[#fields + 1] = all[i + 1]
  end
end
return {fields, agents, pttl}
