"""probe: the concurrent connect scanner (options, command entry, scanner shards and their pool)."""
