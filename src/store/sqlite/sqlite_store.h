// The embedded SQLite backend of store::Store. See store/store.h for the contract.
//
// Design: one database file in WAL mode with synchronous=FULL. One writer thread owns the only
// write connection and drains a queue of write calls: it opens one transaction, runs each call
// inside its own SAVEPOINT (so one failing call rolls back alone), commits once, and only then
// completes every call in the group. That is LevelDB's group commit: under load, one fsync
// covers many writes. The group's index rows are inserted at its end, sorted by key (a search
// inside the group inserts those of the types it reads first); each row names its resource type
// and parameter by one small number (idx_keys), kept in memory for searches. Readers take a
// connection from a small pool, read a WAL snapshot, and read the database file through a memory
// map.
//
// Resource bodies are stored zstd-compressed. Schema and reasoning: docs/architecture.md.
#pragma once

#include "store/store.h"
