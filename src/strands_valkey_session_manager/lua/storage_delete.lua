-- storage_delete: remove one ValkeyStorage value and its index entry, atomically. A missing key is a no-op.
-- KEYS[1] value key (string)          <N>:storage:{<G>}:v:<R>
-- KEYS[2] group index (zset)          <N>:storage:{<G>}:i
-- KEYS[3] groups index (zset)         standalone servers only; the group leaves it with its last key.
--         On a cluster the groups index is in another slot and keeps the group (see ARCHITECTURE.md)
-- ARGV[1] <R>, the key relative to its group
-- ARGV[2] <G>, the group name; only with KEYS[3]
-- Returns 1 when a value was deleted, 0 when there was none.
-- Error reply 'SVSM-WRONGTYPE ...' (from the prelude) when an index holds another type.
redis.call('ZREM', KEYS[2], ARGV[1])
local deleted = redis.call('DEL', KEYS[1])
if KEYS[3] and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return deleted
