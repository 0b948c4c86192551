-- storage_delete: remove one ValkeyStorage value, its index entry and its search postings,
-- atomically. A missing key is a no-op.
-- KEYS[1] value key (string)          <N>:storage:{<G>}:v:<R>
-- KEYS[2] group index (zset)          <N>:storage:{<G>}:i
-- KEYS[3] search documents (hash)     <N>:storage:{<G>}:d
-- KEYS[4] groups index (zset)         standalone servers only; the group leaves it with its last key.
--         On a cluster the groups index is in another slot and keeps the group (see docs/storage.md)
-- ARGV[1] <R>, the key relative to its group
-- ARGV[2] the search postings prefix <N>:storage:{<G>}:p:
-- ARGV[3] <G>, the group name; only with KEYS[4]
-- Returns 1 when a value was deleted, 0 when there was none.
-- A WRONGTYPE from the group index stops the script before anything is deleted.
redis.call('ZREM', KEYS[2], ARGV[1])
unpost(KEYS[3], ARGV[2], ARGV[1])
local deleted = redis.call('DEL', KEYS[1])
if KEYS[4] and redis.call('EXISTS', KEYS[2]) == 0 then
  -- a groups index of another type only keeps a stale group name: the delete stands
  redis.pcall('ZREM', KEYS[4], ARGV[3])
end
return deleted
