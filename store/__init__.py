"""Where factpatch keeps and moves things, with no torch: the append-only edit log (`store.log`:
SQLite, PostgreSQL, artifacts, API keys) and the transports between API and workers
(`store.queue`: in-process, Redis)."""
