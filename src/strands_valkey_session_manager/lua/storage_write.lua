-- storage_write: store one ValkeyStorage value, list it in its group's index and (re)post it in the
-- group's search index, atomically.
-- KEYS[1] value key (string)          <N>:storage:{<G>}:v:<R>
-- KEYS[2] group index (zset)          <N>:storage:{<G>}:i
-- KEYS[3] search documents (hash)     <N>:storage:{<G>}:d
-- KEYS[4] staged value (string)       <N>:storage:{<G>}:w:<token>; only with mode 's'
-- KEYS[5] groups index (zset)         <N>:storage:groups; standalone servers only: on a cluster it
--         lives in another slot, and the client adds the group to it before calling this script
-- ARGV[1] <R>, the key relative to its group (raw text, empty for the key that is the group)
-- ARGV[2] the value (exact bytes); empty with mode 's'
-- ARGV[3] mode: 'v' the value is ARGV[2]; 's' the value was staged in KEYS[4] (large values, which
--         then never pass through Lua): it is renamed into place, or the script fails when it is gone
-- ARGV[4] <G>, the group name (raw text); only with KEYS[5]
-- ARGV[5] the search postings prefix <N>:storage:{<G>}:p:
-- ARGV[6] "<length> <term> <count> ...", the value's search terms; '' when it is not indexed (any
--         earlier postings of the key are removed either way)
-- ARGV[7] optional, a conditional write (compare_and_write): the SHA1 (hex) of the value the
--         writer expects to replace, '' for "no value"
-- ARGV[8] with ARGV[7]: the SHA1 (hex) of the new value. The write goes ahead when the stored
--         value's SHA1 is ARGV[7] or ARGV[8] (already written: a repeat after a lost reply), and
--         when there is no value and ARGV[7] is ''
-- Returns 1; 0 when the condition failed (nothing written, the staged value removed).
-- Error reply 'SVSM-NOSTAGED ...' when the staged value is missing (its SET failed or expired):
-- nothing is written. A WRONGTYPE from an index key stops the script before the value is written
-- (and undoes the key's new group index entry).
-- Server calls for a small value: ZADD (group index), then SET, with between them the groups
-- index's ZADD for a new key or the HGET of the key's postings for an existing one.
if ARGV[3] == 's' and redis.call('EXISTS', KEYS[4]) == 0 then
  return redis.error_reply('SVSM-NOSTAGED the staged value is missing; nothing was written')
end
if ARGV[7] then
  local current = redis.call('GET', KEYS[1])
  local ok
  if current then
    local digest = redis.sha1hex(current)
    ok = digest == ARGV[7] or digest == ARGV[8]
  else
    ok = ARGV[7] == ''
  end
  if not ok then
    if ARGV[3] == 's' then
      redis.call('DEL', KEYS[4])
    end
    return 0
  end
end
-- A key new to the group index has no postings (write and delete keep both in one step) and,
-- on a standalone server, a group that may not be listed yet (the delete of a group's last key
-- unlists it); a key already there has a listed group and may have postings to replace.
if redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[1]) == 1 then
  if KEYS[5] then
    local listed = redis.pcall('ZADD', KEYS[5], 0, ARGV[4])
    if type(listed) == 'table' and listed.err then
      redis.call('ZREM', KEYS[2], ARGV[1]) -- nothing written: no key that list finds without a value
      return listed
    end
  end
else
  unpost(KEYS[3], ARGV[5], ARGV[1])
end
if ARGV[6] ~= '' then
  post(KEYS[3], ARGV[5], ARGV[1], ARGV[6])
end
if ARGV[3] == 's' then
  redis.call('RENAME', KEYS[4], KEYS[1])
  redis.call('PERSIST', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
