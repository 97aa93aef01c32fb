// The PostgreSQL backend of store::Store (OpenPostgresStore in store/store.h). See
// store/store.h for the contract and docs/scaling.md for deployment.
//
// Design: the same tables as the SQLite backend (versions, current, superseded, one idx_* table
// per index kind, the request log), so both run the statements of one search compiler
// (store/sql/search_sql.h). A pool of connections serves reads (a REPEATABLE READ snapshot each)
// and writes (a READ COMMITTED transaction each).
//
// Several taproot processes may share one database. Two things keep their writes correct:
//  * a version is inserted only if no transaction wrote it first (UNIQUE(type, id, version)
//    with ON CONFLICT DO NOTHING, which waits for the other transaction): the loser gets
//    kAborted and the API layer prepares the request again, reading the new version (no lost
//    update, versions dense and ordered);
//  * a search inside a write (the criteria of a conditional create, update or delete) first
//    takes a transaction-scoped advisory lock on a hash of its criteria, so writes with the
//    same criteria take turns and each sees what the previous one committed (no duplicate
//    conditional creates).
// SERIALIZABLE would give both without the lock, but its predicate locks are per index page:
// in a test of 16 threads creating different resources, one write in ten failed as a false
// conflict.
//
// The schema is created and migrated on open, under an advisory lock so that nodes starting
// together apply each migration once. Thread-safety: Store methods may be called from any
// thread; each call holds one pooled connection for its duration.
#pragma once

#include "store/store.h"
