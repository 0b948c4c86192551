-- storage_index: post one existing ValkeyStorage value in its group's search index (the
-- resumable backfill of data written before indexing was on), unless the value changed since the
-- caller read it: a write that replaced or deleted it meanwhile posted (or removed) it itself.
-- KEYS[1] value key (string)          <N>:storage:{<G>}:v:<R>
-- KEYS[2] search documents (hash)     <N>:storage:{<G>}:d
-- ARGV[1] <R>, the key relative to its group
-- ARGV[2] the value as the caller read it (exact bytes)
-- ARGV[3] the search postings prefix <N>:storage:{<G>}:p:
-- ARGV[4] "<length> <term> <count> ...", the terms of ARGV[2]
-- Returns 1 when posted, 0 when the value is no longer ARGV[2] (nothing changed).
if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
unpost(KEYS[2], ARGV[3], ARGV[1])
post(KEYS[2], ARGV[3], ARGV[1], ARGV[4])
return 1
