-- storage_delete_many: remove many ValkeyStorage values of one group, their index entries and
-- their search postings, atomically (delete_prefix sends one call per batch of keys of a group).
-- KEYS[1] group index (zset)          <N>:storage:{<G>}:i
-- KEYS[2] search documents (hash)     <N>:storage:{<G>}:d
-- KEYS[3] groups index (zset), or the group index again on a cluster (the groups index lives in
--         another slot there and keeps the group, as for storage_delete)
-- KEYS[4..] value keys (strings)      <N>:storage:{<G>}:v:<R>, one per ARGV[3..]
-- ARGV[1] the search postings prefix <N>:storage:{<G>}:p:
-- ARGV[2] <G>, the group name; '' on a cluster
-- ARGV[3..] <R> of each key, in the order of KEYS[4..]
-- Returns the number of values deleted.
-- A WRONGTYPE from the group index stops the script before anything is deleted.
local deleted = 0
for i = 3, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  unpost(KEYS[2], ARGV[1], ARGV[i])
  deleted = deleted + redis.call('DEL', KEYS[i + 1])
end
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.pcall('ZREM', KEYS[3], ARGV[2])
end
return deleted
