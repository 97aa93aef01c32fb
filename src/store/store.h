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
//  * A backend shared by several processes (PostgreSQL) may fail a Write with kAborted when a
//    concurrent write conflicts with it; nothing of it is kept, and the caller runs it again.
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
// current version, in the same transaction as the write. Each kind has its own table (or
// equivalent) so that lookups use a typed index.
enum class IndexKind : uint8_t {
  kToken,
  kString,
  kDate,
  kNumber,
  kQuantity,
  kReference,
  kUri,
  kText,  // full text (_text, _content): words, searched with a full-text index
};

struct IndexEntry {
  std::string param;  // search parameter code: "identifier", "name", "subject" ...
  IndexKind kind = IndexKind::kToken;
  // token: the system (empty if none); quantity: the unit system; reference: the target type.
  std::string system;
  // token: the code; string: the normalised text (lower case, no accents); reference: the
  // target id, or the whole URL when it is not "Type/id"; uri: the URI; quantity: the unit code;
  // text: the text to index.
  std::string value;
  // string: the text as written (for :exact); token: the display text (for :text).
  std::string text;
  double number = 0;           // number and quantity: the value
  int64_t start = 0, end = 0;  // date: the first and last microsecond the value covers (UTC)
};
// A version's index rows, shared read-only between the request that computed them and the store,
// which may hold them until its commit: the writer thread neither copies nor frees them.
using IndexRows = std::shared_ptr<const std::vector<IndexEntry>>;

// A new version to write.
struct WriteRecord {
  VersionRecord version;
  // The body already compressed with zstd (callers prepare it outside the writer, where work can
  // run in parallel), in storage the caller keeps until Put returns; when empty, the store
  // compresses version.json itself.
  std::string_view compressed_body;
  IndexRows index;  // none when null; ignored for tombstones (a deleted resource has no rows)
  // The patient whose compartment this version is in (search::PatientKey), empty if none; a
  // tombstone keeps its resource's. Backends that can be distributed (PostgreSQL) file every
  // row of the version under it.
  std::string patient;
};

// Comparison prefixes for ordered values (dates, numbers, quantities): R4 search 3.1.1.4.
enum class Prefix : uint8_t { kEq, kNe, kGt, kLt, kGe, kLe, kSa, kEb, kAp };

// One value a clause accepts (values in a clause are ORed).
struct IndexPredicate {
  // token: an absent system matches any system, an empty one "no system"; reference: the target
  // type, if given. quantity: the unit system, if given.
  std::optional<std::string> system;
  // token: the code; string: the normalised text; reference: the id or URL; uri: the URI;
  // quantity: the unit code (empty: any unit).
  std::string value;
  enum class Match : uint8_t {
    kEqual,     // token, reference, uri: the whole value
    kPrefix,    // string (the default): starts with; uri :below: under this path
    kExact,     // string :exact: as written, case and accents included
    kContains,  // string :contains
    kText,      // token :text: the display text starts with
    kAbove,     // uri :above: the stored URI is a prefix of this one
    kIn,        // token :in, :below, :above: any of `codes`
  } match = Match::kEqual;
  std::vector<std::pair<std::string, std::string>> codes;  // kIn: (system, code) pairs
  // Rows of the clause's parameter with this suffix instead (quantities in UCUM base units).
  std::string param_suffix;
  Prefix prefix = Prefix::kEq;
  double low = 0, high = 0;    // number, quantity: the range the search value stands for
  int64_t start = 0, end = 0;  // date: the first and last microsecond of the search value
};

// One parameter of a search. Clauses are ANDed.
struct IndexClause {
  std::string param;
  IndexKind kind = IndexKind::kToken;
  bool negate = false;          // token :not: resources without any matching row
  std::optional<bool> missing;  // :missing=true / false (any_of is then empty)
  std::vector<IndexPredicate> any_of;
  // When not empty, rows of any of these parameters match (instead of `param` alone): how a
  // compartment's links (Observation: subject or performer) and a parameter that is the union of
  // others (combo-code) are searched. A predicate's suffix (param_suffix, ":text") applies to
  // each.
  std::vector<std::string> any_param;
  // A chain (subject:Patient.name=x): `param` is a reference parameter, and the clause matches
  // resources referring through it to a resource of one of these types that matches the paired
  // clause (evaluated on that type). any_of is then empty.
  std::vector<std::pair<std::string, std::shared_ptr<const IndexClause>>> chain;
  // A reverse chain (_has:Observation:patient:code=x): resources that resources of `has_type`
  // refer to through their reference parameter `param`, where those match `has`.
  std::string has_type;
  std::shared_ptr<const IndexClause> has;
  // Set by the search parser on a reference to one Patient (`subject=Patient/123`) through the
  // parameter that decides the patient key of this type's resources (search::PatientKey): every
  // resource it matches has that patient as its key (VersionRecord::patient). A store that keeps
  // the key on its index rows may look other clauses' rows up by it; the clause itself must
  // still be tested, as a resource keyed to the patient need not match it.
  bool patient_keyed = false;
};

// One _sort key: a search parameter (by its index kind), or "_id" / "_lastUpdated".
struct SortKey {
  std::string param;
  std::vector<std::string> any_param;  // when not empty: the rows of any of these instead
  IndexKind kind = IndexKind::kString;
  bool descending = false;
};

struct SearchQuery {
  std::string type;              // empty: every type
  std::vector<std::string> ids;  // _id (OR)
  // The page starts after this seq (keyset paging in seq order, without _sort; offset then
  // counts from there). The total still counts every match.
  std::optional<int64_t> after_seq;
  std::vector<IndexClause> clauses;
  // Sort keys, most significant first; resources without a value for a key sort after those
  // with one. Ties, and no keys, order by seq (the order the versions were written).
  std::vector<SortKey> sort;
  bool explain = false;  // also report the plan and timing of each statement (SearchPage)
  // Search the store as it was when SearchPage::snapshot_seq had this value (the first page's),
  // so later pages neither skip nor repeat resources while writes go on.
  std::optional<int64_t> as_of_seq;
  std::optional<int64_t> updated_ge, updated_lt;  // _lastUpdated range, microseconds
  int64_t offset = 0;
  int64_t count = 20;
  bool want_total = true;
  // Inside a write: no match makes the write create a resource (a conditional create, or a
  // conditional update of nothing). A store shared by several processes makes writes whose
  // searches have equal criteria take turns, so that two of them cannot both create.
  bool decides_create = false;
};

struct SearchPage {
  std::vector<VersionRecord> resources;  // current, non-deleted versions, in SearchQuery order
  std::optional<int64_t> total;
  bool has_more = false;
  // The newest version this search could see (for as_of_seq), read when a paging link needs it:
  // the page has a next one, is not the first (offset, after_seq), or was itself asked as of a
  // snapshot. A first page that holds every match leaves it unset: a statement saved.
  std::optional<int64_t> snapshot_seq;
  // With SearchQuery::explain: the statements run, their plans and timings (operators' _explain).
  struct Step {
    std::string sql;
    std::vector<std::string> plan;
    int64_t micros = 0;
  };
  std::vector<Step> explained;
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
  // Several independent searches in the same view, pages in the order asked. A store that can
  // send their statements together does (PostgreSQL: one round trip for all the searches of one
  // statement each); otherwise they run one after another.
  virtual Result<std::vector<SearchPage>> SearchBatch(const std::vector<SearchQuery>& queries) {
    std::vector<SearchPage> pages;
    for (const SearchQuery& q : queries) {
      ASSIGN_OR_RETURN(SearchPage page, Search(q));
      pages.push_back(std::move(page));
    }
    return pages;
  }
  virtual Result<HistoryPage> History(const HistoryQuery& query) = 0;
  virtual Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) = 0;
  // Every version (tombstones too) with seq > after_seq, oldest first, at most `limit`: a full
  // copy of the store, batch by batch (taproot migrate).
  virtual Result<std::vector<VersionRecord>> ScanVersions(int64_t after_seq, int64_t limit) = 0;
  // The types among `links` ((type, reference parameter) pairs) that have a current version
  // referring to target_type/target_id through that parameter: which types a compartment
  // (Patient/123) holds anything of, in one lookup instead of one search per type.
  virtual Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) = 0;
};

class WriteTxn : public virtual ReadView {
 public:
  // The commit timestamp for writes in this call: strictly later than any timestamp the store
  // has handed out before, so versions stay ordered in time.
  virtual int64_t NextTimestamp() = 0;
  // Stores a new version and makes it current. version.version must be current + 1 (or 1).
  virtual Status Put(const WriteRecord& record) = 0;
  virtual Status RecordRequest(const RequestRecord& record) = 0;
  // Adds index rows for versions already stored, each row with its version's seq: reindexing
  // after search parameters change. Rows already present are kept; all rows are of one type,
  // which lets the store insert them in key order.
  virtual Status PutIndexRows(const std::string& type,
                              const std::vector<std::pair<int64_t, IndexEntry>>& rows) = 0;
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
  // Read and ReadStatement may be served by a read replica that has replayed every write this
  // process made (so a client reads its own writes), but not necessarily those of other
  // processes. ReadPrimary sees every committed write: for reads that decide a write, and for
  // clients that ask for the latest (Cache-Control: no-cache). Without replicas, it is Read.
  virtual Status ReadPrimary(const std::function<Status(ReadView&)>& fn) { return Read(fn); }
  virtual Status Write(const std::function<Status(WriteTxn&)>& fn) = 0;
  virtual Result<StoreStats> Stats() = 0;
  // After a bulk load: brings the database's planner statistics and visibility map up to date,
  // so that the first searches do not run on plans made for empty tables nor visit the tables
  // from index-only scans (PostgreSQL's autovacuum would get there, a minute or more later).
  // Nothing to do for a store that plans without statistics.
  virtual Status RefreshStatistics() { return Status::Ok(); }
  // True while the store accepts reads and writes.
  virtual bool IsOpen() const = 0;
  // OK when the store can serve requests now: open, and for a database server, reachable (one
  // trivial statement on the primary). For readiness probes: a load balancer stops sending
  // requests to a node whose database is away.
  virtual Status Ready() {
    return IsOpen() ? Status::Ok() : Status::Unavailable("the store is closed");
  }
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
  // WAL pages between checkpoints. A page written by several commits between two checkpoints
  // is copied into the database once, so a bulk load gains from a long interval (taproot import
  // uses kBulkCheckpointPages: 28 % more resources/s on 1,000 patients); a server keeps it
  // short, since the commit that checkpoints waits for all those pages.
  int checkpoint_pages = 4000;
  static constexpr int kBulkCheckpointPages = 65536;  // 256 MiB of 4 KiB pages
  // Bytes of the database file the read connections map into memory (SQLite caps it at its
  // build's limit, 2 GiB on Debian; the rest is read with pread). 0: no mapping. An I/O error on
  // a mapped page ends the process (SIGBUS) instead of failing one request.
  int64_t mmap_bytes = int64_t{2} << 30;
  // Bytes of compressed current versions kept in memory for reads by id (0: no cache).
  size_t cache_bytes = 64 << 20;
  // X-Request-ID records older than this are pruned: a retry must arrive within it.
  int64_t request_log_ttl_seconds = 24 * 3600;
};

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

struct PostgresOptions {
  // The primary, as a libpq connection URL: postgresql://user@host:port/dbname. Every write
  // and every read goes here.
  std::string url;
  // Streaming replicas of the primary: reads and searches go to them (see Store::Read).
  std::vector<std::string> replicas;
  int connections = 16;  // pooled connections per server (each serves one call at a time)
  int64_t request_log_ttl_seconds = 24 * 3600;
  // A per-node cache of current versions for reads by id, kept coherent across nodes with
  // LISTEN/NOTIFY (other nodes' writes show within milliseconds); 0 turns it off. Not used
  // with replicas.
  size_t cache_mb = 64;
  // Apply the schema's migrations up to this one only (0: all of them). For tests that build a
  // database in an older schema and then upgrade it; a store opened so is not for use.
  int schema_version = 0;
};

// Opens (and creates or migrates the schema of) a store in a PostgreSQL database. Several
// processes may open the same database; a write that loses a race with a concurrent one fails
// with kAborted for the caller to prepare again (store/postgres/postgres_store.h).
Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options);

}  // namespace taproot::store
