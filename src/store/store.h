// The storage interface: versioned FHIR resources, their search index rows and the log of
// applied requests, behind one abstract Store with two planned backends (SQLite embedded, the
// default; PostgreSQL for scale-out). Nothing here knows HTTP or FHIR REST semantics: callers
// (api/) decide what to write; the store guarantees how.
//
// Guarantees every backend must give:
//  * Write(fn) runs fn inside one atomic transaction. If fn returns an error, none of its
//    changes are kept. Write returns OK only after the transaction is durable (synced).
//  * Writes are serialised: fn sees every write committed before it, and no other write runs
//    between its reads and its writes. Conditional create/update/delete therefore cannot race.
//  * Concurrent Write calls may be committed together (group commit): one sync for many writes.
//  * Read(fn) runs fn against a consistent snapshot.
//
// Ownership: the Store owns its connections and threads. ReadView and WriteTxn references are
// valid only during the callback. Thread-safety: Store methods may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace taproot::store {

// One version of one resource as stored.
struct VersionRecord {
  std::string type;
  std::string id;
  int64_t version = 0;
  int64_t last_updated = 0;  // microseconds since the epoch, UTC
  bool deleted = false;      // a tombstone: the resource was deleted in this version
  std::string method;        // the interaction that made it: POST, PUT, PATCH, DELETE
  std::string json;          // the stored resource text; empty for tombstones
  int64_t seq = 0;           // store-wide commit order
};

// The stored text of a version with meta.versionId and meta.lastUpdated added: the resource as
// clients see it. Stored text always has "meta":{...} right after the id (the API layer writes it
// so), which lets this splice the two fields in without re-parsing.
std::string WithVersionMeta(std::string_view text, int64_t version, int64_t last_updated);

// A search index row. The search module decides the rows; the store keeps them in step with the
// current version, in the same transaction as the write.
struct IndexEntry {
  std::string param;   // search parameter code: "identifier", "_id" ...
  std::string system;  // token system; empty if none
  std::string value;   // token code / normalised value
};

// A new version to write.
struct WriteRecord {
  VersionRecord version;
  // The body already compressed with zstd (callers prepare it outside the writer, where work can
  // run in parallel); when empty, the store compresses version.json itself.
  std::string compressed_body;
  std::vector<IndexEntry> index;  // ignored for tombstones (a deleted resource has no rows)
};

// One token value; an absent system matches any system, an empty one matches "no system".
struct TokenValue {
  std::optional<std::string> system;
  std::string code;
};
// OR across values; clauses are ANDed.
struct TokenClause {
  std::string param;
  std::vector<TokenValue> any_of;
};

struct SearchQuery {
  std::string type;              // empty: every type
  std::vector<std::string> ids;  // _id (OR)
  std::vector<TokenClause> clauses;
  std::optional<int64_t> updated_ge, updated_lt;  // _lastUpdated range, microseconds
  int64_t offset = 0;
  int64_t count = 20;
  bool want_total = true;
};

struct SearchPage {
  std::vector<VersionRecord> resources;  // current, non-deleted versions, ordered by type and id
  std::optional<int64_t> total;
  bool has_more = false;
};

struct HistoryQuery {
  std::string type;                   // empty: whole system
  std::string id;                     // empty: whole type
  std::optional<int64_t> since;       // versions with last_updated >= since
  std::optional<int64_t> at;          // the version current at this instant (one per resource)
  std::optional<int64_t> before_seq;  // paging cursor: only versions with seq < before_seq
  int64_t count = 20;
};

struct HistoryPage {
  std::vector<VersionRecord> entries;  // newest first
  std::optional<int64_t> next_before_seq;
  int64_t total = 0;  // versions matching (ignoring paging)
};

// The record of an applied write request, for idempotent retries keyed by X-Request-ID.
struct RequestRecord {
  std::string request_id;
  std::string fingerprint;  // method and URL of the original request
  int status = 0;
  std::string headers_json;  // a JSON object of response headers
  std::string body;
};

class ReadView {
 public:
  virtual ~ReadView() = default;
  // The newest version (a tombstone if deleted), or nullopt if the resource never existed.
  virtual Result<std::optional<VersionRecord>> ReadCurrent(const std::string& type,
                                                           const std::string& id) = 0;
  virtual Result<std::optional<VersionRecord>> ReadVersion(const std::string& type,
                                                           const std::string& id,
                                                           int64_t version) = 0;
  virtual Result<SearchPage> Search(const SearchQuery& query) = 0;
  virtual Result<HistoryPage> History(const HistoryQuery& query) = 0;
  virtual Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) = 0;
};

class WriteTxn : public virtual ReadView {
 public:
  // The commit timestamp for writes in this call: strictly later than any timestamp the store
  // has handed out before, so versions stay ordered in time.
  virtual int64_t NextTimestamp() = 0;
  // Stores a new version and makes it current. version.version must be current + 1 (or 1).
  virtual Status Put(const WriteRecord& record) = 0;
  virtual Status RecordRequest(const RequestRecord& record) = 0;
  // Runs fn in a nested transaction: if it fails, only its own changes are undone and the outer
  // transaction continues (batch entries succeed or fail on their own).
  virtual Status Nested(const std::function<Status(WriteTxn&)>& fn) = 0;
};

struct StoreStats {
  int64_t resources = 0;  // current, non-deleted
  int64_t versions = 0;
  int64_t write_calls = 0;  // Write() calls committed since open
  int64_t commits = 0;      // transactions (disk syncs) they took: group commit makes this smaller
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Status Read(const std::function<Status(ReadView&)>& fn) = 0;
  // For a callback that runs exactly one query (a read by id): a single statement is consistent
  // by itself, so the backend may skip the explicit snapshot transaction.
  virtual Status ReadStatement(const std::function<Status(ReadView&)>& fn) = 0;
  virtual Status Write(const std::function<Status(WriteTxn&)>& fn) = 0;
  virtual Result<StoreStats> Stats() = 0;
  // True while the store accepts reads and writes.
  virtual bool IsOpen() const = 0;
  // Finishes queued writes, checkpoints, and closes. Further calls fail with kUnavailable.
  virtual void Close() = 0;
  // True if the store held no resources when it was opened (used to load demo data once).
  virtual bool WasEmptyAtOpen() const = 0;
};

struct SqliteOptions {
  std::string dir;  // created if missing; the database is dir/taproot.db
  int read_connections = 8;
  int max_group = 512;  // most write calls committed together
  bool sync = true;     // false only for throwaway benchmarks: no fsync per commit
  // Bytes of compressed current versions kept in memory for reads by id (0: no cache).
  size_t cache_bytes = 64 << 20;
  // X-Request-ID records older than this are pruned: a retry must arrive within it.
  int64_t request_log_ttl_seconds = 24 * 3600;
};

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

}  // namespace taproot::store
