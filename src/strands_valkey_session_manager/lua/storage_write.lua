-- storage_write: store one ValkeyStorage value and list it in its group's index, atomically.
-- KEYS[1] value key (string)          <N>:storage:{<G>}:v:<R>
-- KEYS[2] group index (zset)          <N>:storage:{<G>}:i
-- KEYS[3] groups index (zset)         <N>:storage:groups; standalone servers only: on a cluster it
--         lives in another slot, and the client adds the group to it before calling this script
-- ARGV[1] <R>, the key relative to its group (raw text, empty for the key that is the group)
-- ARGV[2] the value (exact bytes)
-- ARGV[3] <G>, the group name (raw text); only with KEYS[3]
-- Returns 1.
-- Error reply 'SVSM-WRONGTYPE ...' (from the prelude) when an index holds another type; nothing is
-- written then. The first write comes after every check, so an OOM refusal also writes nothing.
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if KEYS[3] then
  redis.call('ZADD', KEYS[3], 0, ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
