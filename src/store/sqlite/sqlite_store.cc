#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "common/compress.h"
#include "common/log.h"
#include "store/sql/search_sql.h"
#include "store/sqlite/current_cache.h"

namespace taproot::store {
namespace {

// 2: typed search index tables (string, date, number, quantity, reference, uri). A version 1
// store is upgraded in place; its resources need a $reindex to be found by the new parameters.
// 3: the superseded table and date rows by seq, so that searches start from the index.
// 4: index rows name their (type, param) pair by a number (idx_keys). Upgraded in place.
constexpr int kSchemaVersion = 4;

// The index tables whose rows carry a pair's number, and their columns after it.
constexpr std::pair<const char*, const char*> kKeyedIndexTables[] = {
    {"idx_token", "code, system, seq"},
    {"idx_string", "norm, exact, seq"},
    {"idx_date", "start, \"end\", seq"},
    {"idx_number", "value, seq"},
    {"idx_quantity", "code, system, value, seq"},
    {"idx_ref", "target, target_type, seq"},
    {"idx_uri", "uri, seq"}};

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every version of every resource, in commit order (seq). Bodies are zstd-compressed JSON.
CREATE TABLE IF NOT EXISTS versions(
  seq INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  method TEXT NOT NULL,
  body BLOB,
  UNIQUE(type, id, version));
CREATE INDEX IF NOT EXISTS versions_by_type ON versions(type, seq);
CREATE INDEX IF NOT EXISTS versions_by_ts ON versions(ts);
-- The current version of each resource: the row a read or search starts from.
CREATE TABLE IF NOT EXISTS current(
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY(type, id)) WITHOUT ROWID;
-- The (resource type, search parameter) pairs of the index rows, each named by a small number
-- (tp): a row carries one or two bytes for the pair instead of both names, which made the index
-- a third smaller and its inserts faster (bench/RESULTS.md, seventh session).
CREATE TABLE IF NOT EXISTS idx_keys(
  tp INTEGER PRIMARY KEY, type TEXT NOT NULL, param TEXT NOT NULL, UNIQUE(type, param));
-- Search index rows, one table per kind. Each row carries the seq of the version that produced
-- it, and a search matches current.seq: rows of earlier versions never match, so a write only
-- inserts (no delete) and each table is a single B-tree keyed for its lookups.
CREATE TABLE IF NOT EXISTS idx_token(
  tp INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY(tp, code, system, seq)) WITHOUT ROWID;
-- String rows: lower-cased, accent-free text for the default starts-with match, and as written.
CREATE TABLE IF NOT EXISTS idx_string(
  tp INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY(tp, norm, exact, seq)) WITHOUT ROWID;
-- Date rows: the first and last microsecond (UTC) the value covers.
CREATE TABLE IF NOT EXISTS idx_date(
  tp INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY(tp, start, end, seq)) WITHOUT ROWID;
-- A version's dates, for filtering and sorting the results of a search started elsewhere
-- (a patient's observations in a date range, newest first).
CREATE INDEX IF NOT EXISTS idx_date_by_seq ON idx_date(seq);
CREATE TABLE IF NOT EXISTS idx_number(
  tp INTEGER NOT NULL, value REAL NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(tp, value, seq)) WITHOUT ROWID;
-- Quantity rows, as written and (system urn:taproot:ucum-canonical) in UCUM base units.
CREATE TABLE IF NOT EXISTS idx_quantity(
  tp INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL,
  value REAL NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(tp, code, system, value, seq)) WITHOUT ROWID;
-- Reference rows: the target's type and id, or the whole URL (target_type empty).
CREATE TABLE IF NOT EXISTS idx_ref(
  tp INTEGER NOT NULL, target TEXT NOT NULL, target_type TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY(tp, target, target_type, seq)) WITHOUT ROWID;
-- Full text (_text: the narrative, _content: every string of the resource), unicode61 words
-- with accents removed.
CREATE VIRTUAL TABLE IF NOT EXISTS idx_fts USING fts5(
  type UNINDEXED, param UNINDEXED, seq UNINDEXED, body, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS idx_uri(
  tp INTEGER NOT NULL, uri TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(tp, uri, seq)) WITHOUT ROWID;
-- Versions that are no longer current, and the seq of the version that replaced them: their
-- index rows stay (a later page of an earlier search still sees them as they were) but do not
-- match. A search drives from the index rows and drops these with one lookup each.
CREATE TABLE IF NOT EXISTS superseded(seq INTEGER PRIMARY KEY, by_seq INTEGER NOT NULL);
-- Applied write requests by X-Request-ID, so a retry is answered, not re-applied.
CREATE TABLE IF NOT EXISTS requests(
  request_id TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  ts INTEGER NOT NULL,
  status INTEGER NOT NULL,
  headers TEXT NOT NULL,
  body BLOB NOT NULL);
)sql";

Status SqlError(sqlite3* db, const std::string& what) {
  int code = sqlite3_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_IOERR || code == SQLITE_FULL ||
      code == SQLITE_CANTOPEN) {
    return Status::Unavailable(msg);
  }
  return Status::Internal(msg);
}

// A prepared statement that is reset on scope exit.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() {
    if (s_) sqlite3_finalize(s_);
  }
  Stmt(Stmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

struct Binder {
  sqlite3_stmt* s;
  int i = 1;
  Binder& Text(std::string_view v) {
    sqlite3_bind_text(s, i++, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // For text that outlives the statement's step (SQLite keeps the pointer, no copy).
  Binder& Borrowed(std::string_view v) {
    sqlite3_bind_text(s, i++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Binder& BorrowedBlob(std::string_view v) {
    sqlite3_bind_blob(s, i++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Binder& Blob(std::string_view v) {
    sqlite3_bind_blob(s, i++, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Binder& Int(int64_t v) {
    sqlite3_bind_int64(s, i++, v);
    return *this;
  }
  Binder& Real(double v) {
    sqlite3_bind_double(s, i++, v);
    return *this;
  }
};

using sql::kVersionColumns;
using sql::SqlArg;
using sql::TableOf;

void BindAll(Binder& b, const std::vector<SqlArg>& args) {
  for (const SqlArg& a : args) {
    if (a.kind == SqlArg::kText) b.Text(a.text);
    if (a.kind == SqlArg::kInt) b.Int(a.i);
    if (a.kind == SqlArg::kReal) b.Real(a.d);
  }
}

std::string ColText(sqlite3_stmt* s, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, col))) : std::string();
}
std::string_view ColBlob(sqlite3_stmt* s, int col) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, col));
  return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, col)))
           : std::string_view();
}

// One SQLite connection with a cache of prepared statements.
class Connection {
 public:
  ~Connection() {
    cache_.clear();
    if (db_) sqlite3_close_v2(db_);
  }

  static Result<std::unique_ptr<Connection>> Open(const std::string& path, bool sync) {
    auto c = std::make_unique<Connection>();
    int rc =
        sqlite3_open_v2(path.c_str(), &c->db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      return Status::Unavailable("cannot open " + path + ": " + sqlite3_errstr(rc));
    }
    sqlite3_busy_timeout(c->db_, 10000);
    RETURN_IF_ERROR(c->Exec("PRAGMA journal_mode=WAL"));
    RETURN_IF_ERROR(c->Exec(sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF"));
    RETURN_IF_ERROR(c->Exec("PRAGMA foreign_keys=OFF"));
    RETURN_IF_ERROR(c->Exec("PRAGMA cache_size=-65536"));
    RETURN_IF_ERROR(c->Exec("PRAGMA temp_store=MEMORY"));
    return c;
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown";
      sqlite3_free(err);
      return Status::Internal(std::string("sqlite: ") + msg + " in " + sql);
    }
    return Status::Ok();
  }

  // Runs a cached statement that takes no parameters and returns no rows (BEGIN, COMMIT):
  // cheaper than Exec, which parses the SQL every time.
  Status Step(const std::string& sql) {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, Prepare(sql));
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(db_, sql);
    return Status::Ok();
  }

  // Returns a cached prepared statement, reset and with bindings cleared.
  Result<sqlite3_stmt*> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
      sqlite3_reset(it->second.get());
      sqlite3_clear_bindings(it->second.get());
      return it->second.get();
    }
    // Searches build many statement shapes: keep the cache bounded (a client could otherwise
    // grow it without limit) by dropping the idle statements when it fills up.
    if (cache_.size() >= kMaxCachedStatements) {
      for (auto e = cache_.begin(); e != cache_.end();) {
        e = sqlite3_stmt_busy(e->second.get()) ? std::next(e) : cache_.erase(e);
      }
    }
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
        SQLITE_OK) {
      return SqlError(db_, "prepare");
    }
    cache_.emplace(sql, Stmt(s));
    return s;
  }

  static constexpr size_t kMaxCachedStatements = 512;

  sqlite3* db() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, Stmt> cache_;
};

// Steps a statement to completion; for statements without result rows.
Status Run(Connection& c, sqlite3_stmt* s, const char* what) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(c.db(), what);
  return Status::Ok();
}

Result<VersionRecord> RowToVersion(sqlite3_stmt* s, int first = 0) {
  VersionRecord r;
  r.type = ColText(s, first);
  r.id = ColText(s, first + 1);
  r.version = sqlite3_column_int64(s, first + 2);
  r.last_updated = sqlite3_column_int64(s, first + 3);
  r.deleted = sqlite3_column_int64(s, first + 4) != 0;
  r.method = ColText(s, first + 5);
  std::string_view body = ColBlob(s, first + 6);
  if (!body.empty()) {
    ASSIGN_OR_RETURN(r.json, ZstdDecompress(body));
  }
  r.seq = sqlite3_column_int64(s, first + 7);
  return r;
}

// Steps a statement that selects version rows (kVersionColumns) to its end; with `extra`, the
// first row's next column (SqlRunner::QueryVersions).
Result<std::vector<VersionRecord>> StepAll(Connection& c, sqlite3_stmt* s,
                                           int64_t* extra = nullptr) {
  std::vector<VersionRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (extra && out.empty()) *extra = sqlite3_column_int64(s, 8);
    auto r = RowToVersion(s);
    if (!r.ok()) {
      sqlite3_reset(s);
      return r.status();
    }
    out.push_back(std::move(r).value());
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return SqlError(c.db(), "scan");
  return out;
}

// The numbers of the (type, param) pairs of the index rows (the idx_keys table), for the writer
// and for searches. A pair gets its number the first time the writer inserts a row with it,
// and keeps it for good: the number is in the map before any row carrying it commits, so a
// search never meets a row whose pair it cannot name.
//
// Thread-safety: only the writer thread adds pairs (under mu_) and reads entries' `stored`;
// searches look numbers up under mu_.
class IndexKeys {
 public:
  Status Load(Connection& c) {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, c.Prepare("SELECT tp, type, param FROM idx_keys"));
    std::lock_guard lock(mu_);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      int64_t tp = sqlite3_column_int64(s, 0);
      keys_[sql::PairName(ColText(s, 1), ColText(s, 2))] = Entry{tp, true};
      next_ = std::max(next_, tp + 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return SqlError(c.db(), "load index keys");
    return Status::Ok();
  }

  int64_t Find(std::string_view type, std::string_view param) const {
    std::lock_guard lock(mu_);
    auto it = keys_.find(sql::PairName(type, param));
    return it == keys_.end() ? -1 : it->second.tp;
  }

  // Writer: the number for rows about to be inserted in the open transaction, which stores the
  // pair too when it is new (or was stored by a transaction since rolled back).
  Result<int64_t> ForWrite(Connection& c, std::string_view type, std::string_view param) {
    std::string name = sql::PairName(type, param);
    auto it = keys_.find(name);
    if (it == keys_.end()) {
      std::lock_guard lock(mu_);
      it = keys_.emplace(std::move(name), Entry{next_++, false}).first;
    }
    Entry& e = it->second;
    if (!e.stored) {
      ASSIGN_OR_RETURN(sqlite3_stmt * s,
                       c.Prepare("INSERT OR IGNORE INTO idx_keys(tp, type, param) VALUES(?,?,?)"));
      Binder{s}.Int(e.tp).Text(type).Text(param);
      RETURN_IF_ERROR(Run(c, s, "insert index key"));
      e.stored = true;
      stored_in_group_.push_back(&e);
    }
    return e.tp;
  }

  // Writer: after a rollback (of a call, a nested transaction or the group), the pairs stored
  // in this group may be gone from idx_keys; they are stored again when next used. Their
  // numbers stay, so searches that already looked them up stay right.
  void RolledBack() {
    for (Entry* e : stored_in_group_) e->stored = false;
    stored_in_group_.clear();
  }
  // Writer: the group committed.
  void Committed() { stored_in_group_.clear(); }

 private:
  struct Entry {
    int64_t tp;
    bool stored;  // in idx_keys as of the open transaction
  };

  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> keys_;  // node-based: Entry pointers stay valid
  int64_t next_ = 1;
  std::vector<Entry*> stored_in_group_;
};

// Runs the shared search compiler's statements on one connection.
class SqliteRunner : public sql::SqlRunner {
 public:
  SqliteRunner(Connection& c, const IndexKeys& keys) : c_(c), keys_(keys) {}

  int64_t IndexKey(std::string_view type, std::string_view param) override {
    return keys_.Find(type, param);
  }

  Result<int64_t> QueryInt(const std::string& sql, const std::vector<SqlArg>& args) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, c_.Prepare(sql));
    Binder b{s};
    BindAll(b, args);
    if (sqlite3_step(s) != SQLITE_ROW) {
      Status st = SqlError(c_.db(), "search");
      sqlite3_reset(s);
      return st;
    }
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
  }

  Result<std::vector<VersionRecord>> QueryVersions(const std::string& sql,
                                                   const std::vector<SqlArg>& args,
                                                   int64_t* extra) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, c_.Prepare(sql));
    Binder b{s};
    BindAll(b, args);
    return StepAll(c_, s, extra);
  }

  Result<std::vector<std::string>> QueryTexts(const std::string& sql,
                                              const std::vector<SqlArg>& args) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, c_.Prepare(sql));
    Binder b{s};
    BindAll(b, args);
    std::vector<std::string> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ColText(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return SqlError(c_.db(), "search");
    return out;
  }

  Result<std::vector<std::string>> Explain(const std::string& sql,
                                           const std::vector<SqlArg>& args) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * e, c_.Prepare("EXPLAIN QUERY PLAN " + sql));
    Binder b{e};
    BindAll(b, args);
    std::vector<std::string> plan;
    while (sqlite3_step(e) == SQLITE_ROW) plan.push_back(ColText(e, 3));
    sqlite3_reset(e);
    return plan;
  }

 private:
  Connection& c_;
  const IndexKeys& keys_;
};

// Reads shared by the read snapshot and the write transaction.
class SqliteView : public virtual ReadView {
 public:
  // With a cache, ReadCurrent is served from it when it can (single-statement reads only).
  SqliteView(Connection& c, IndexKeys& keys, CurrentCache* cache = nullptr)
      : c_(c), keys_(keys), cache_(cache) {}

  Result<std::optional<VersionRecord>> ReadCurrent(const std::string& type,
                                                   const std::string& id) override {
    if (cache_) {
      if (auto hit = cache_->Get(type, id)) {
        VersionRecord r = std::move(hit->meta);
        if (!hit->compressed_body.empty()) {
          ASSIGN_OR_RETURN(r.json, ZstdDecompress(hit->compressed_body));
        }
        return std::optional<VersionRecord>(std::move(r));
      }
    }
    uint64_t generation = cache_ ? cache_->Generation() : 0;
    ASSIGN_OR_RETURN(sqlite3_stmt * s,
                     c_.Prepare(std::string("SELECT ") + kVersionColumns +
                                " FROM versions WHERE seq = (SELECT seq FROM current WHERE type=? "
                                "AND id=?)"));
    Binder{s}.Text(type).Text(id);
    if (!cache_) return One(s);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(s);
      return std::optional<VersionRecord>();
    }
    if (rc != SQLITE_ROW) return SqlError(c_.db(), "read");
    CurrentCache::Entry entry;
    entry.compressed_body = std::string(ColBlob(s, 6));
    auto r = RowToVersion(s);
    sqlite3_reset(s);
    if (!r.ok()) return r.status();
    entry.meta = *r;
    entry.meta.json.clear();
    cache_->Fill(std::move(entry), generation);
    return std::optional<VersionRecord>(std::move(r).value());
  }

  Result<std::optional<VersionRecord>> ReadVersion(const std::string& type, const std::string& id,
                                                   int64_t version) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s, c_.Prepare(std::string("SELECT ") + kVersionColumns +
                                                  " FROM versions WHERE type=? AND id=? AND "
                                                  "version=?"));
    Binder{s}.Text(type).Text(id).Int(version);
    return One(s);
  }

  Result<SearchPage> Search(const SearchQuery& q) override {
    SqliteRunner runner(c_, keys_);
    return sql::RunSearch(sql::Dialect::kSqlite, q, runner);
  }

  Result<HistoryPage> History(const HistoryQuery& q) override {
    SqliteRunner runner(c_, keys_);
    return sql::RunHistory(q, runner);
  }

  Connection& connection() { return c_; }

  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    SqliteRunner runner(c_, keys_);
    return sql::RunReferringTypes(sql::Dialect::kSqlite, target_type, target_id, links, runner);
  }

  Result<std::vector<VersionRecord>> ScanVersions(int64_t after_seq, int64_t limit) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s,
                     c_.Prepare(std::string("SELECT ") + kVersionColumns +
                                " FROM versions WHERE seq>? ORDER BY seq LIMIT ?"));
    Binder{s}.Int(after_seq).Int(limit);
    return All(s);
  }

  Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s,
                     c_.Prepare("SELECT fingerprint, status, headers, body FROM requests WHERE "
                                "request_id=?"));
    Binder{s}.Text(request_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(s);
      return std::optional<RequestRecord>();
    }
    if (rc != SQLITE_ROW) return SqlError(c_.db(), "find request");
    RequestRecord r;
    r.request_id = request_id;
    r.fingerprint = ColText(s, 0);
    r.status = static_cast<int>(sqlite3_column_int64(s, 1));
    r.headers_json = ColText(s, 2);
    auto body = ZstdDecompress(ColBlob(s, 3));
    sqlite3_reset(s);
    if (!body.ok()) return body.status();
    r.body = std::move(body).value();
    return std::optional<RequestRecord>(std::move(r));
  }

 protected:
  Result<std::optional<VersionRecord>> One(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(s);
      return std::optional<VersionRecord>();
    }
    if (rc != SQLITE_ROW) return SqlError(c_.db(), "read");
    auto r = RowToVersion(s);
    sqlite3_reset(s);
    if (!r.ok()) return r.status();
    return std::optional<VersionRecord>(std::move(r).value());
  }

  Result<std::vector<VersionRecord>> All(sqlite3_stmt* s) { return StepAll(c_, s); }

  Connection& c_;
  IndexKeys& keys_;
  CurrentCache* cache_;
};

// Index rows of a commit group that are not in the B-trees yet (SqliteWriteTxn::InsertIndex):
// one chunk per write call (and per nested transaction), so that a rolled-back call drops its
// own rows and rows that a rolled-back call had written for earlier calls go in again.
struct HeldIndexRows {
  struct Rows {
    std::vector<std::pair<int64_t, const IndexEntry*>> rows;  // with the seq of their version
    std::vector<IndexRows> owners;                            // what `rows` point into
    bool written = false;
  };
  struct Chunk {
    std::map<std::string, Rows, std::less<>> by_type;
  };
  std::vector<Chunk> chunks;

  // (chunk, type) of the rows not written yet: what a rolled-back call must mark unwritten
  // again if it wrote them.
  std::vector<std::pair<size_t, std::string>> Unwritten() const {
    std::vector<std::pair<size_t, std::string>> out;
    for (size_t k = 0; k < chunks.size(); ++k) {
      for (const auto& [type, rows] : chunks[k].by_type) {
        if (!rows.written) out.emplace_back(k, type);
      }
    }
    return out;
  }
};

// The resource types whose index rows a search reads: its own (all when it has none) and
// those of its chains and reverse chains. Empty optional: every type.
std::optional<std::set<std::string, std::less<>>> TypesSearched(const SearchQuery& q) {
  std::set<std::string, std::less<>> types;
  if (q.type.empty()) return std::nullopt;
  types.insert(q.type);
  std::vector<const IndexClause*> to_visit;
  for (const IndexClause& c : q.clauses) to_visit.push_back(&c);
  while (!to_visit.empty()) {
    const IndexClause* c = to_visit.back();
    to_visit.pop_back();
    for (const auto& [type, inner] : c->chain) {
      if (type.empty()) return std::nullopt;
      types.insert(type);
      if (inner) to_visit.push_back(inner.get());
    }
    if (c->has) {
      if (c->has_type.empty()) return std::nullopt;
      types.insert(c->has_type);
      to_visit.push_back(c->has.get());
    }
  }
  return types;
}

class SqliteWriteTxn : public SqliteView, public WriteTxn {
 public:
  // `written` collects the resources written, to drop from the cache once the commit is durable.
  using Written = std::vector<std::pair<std::string, std::string>>;
  SqliteWriteTxn(Connection& c, IndexKeys& keys, int64_t* last_ts, Written* pending,
                 HeldIndexRows* held)
      : SqliteView(c, keys), last_ts_(last_ts), pending_(pending), held_(held) {}

  int64_t NextTimestamp() override {
    int64_t now = NowMicros();
    *last_ts_ = now > *last_ts_ ? now : *last_ts_ + 1;
    return *last_ts_;
  }

  Status Put(const WriteRecord& rec) override {
    const VersionRecord& v = rec.version;
    std::string compressed;
    if (rec.compressed_body.empty() && !v.json.empty()) compressed = ZstdCompress(v.json, 1);
    std::string_view body = rec.compressed_body.empty() ? compressed : rec.compressed_body;
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * s,
                       c_.Prepare("INSERT INTO versions(type, id, version, ts, deleted, method, "
                                  "body) VALUES(?,?,?,?,?,?,?)"));
      Binder b{s};
      b.Text(v.type)
          .Text(v.id)
          .Int(v.version)
          .Int(v.last_updated)
          .Int(v.deleted ? 1 : 0)
          .Text(v.method);
      if (body.empty()) {
        sqlite3_bind_null(s, b.i++);
      } else {
        b.BorrowedBlob(body);  // stepped before Put returns
      }
      int rc = sqlite3_step(s);
      sqlite3_reset(s);
      if (rc == SQLITE_CONSTRAINT) {
        return Status::Conflict("version " + std::to_string(v.version) + " of " + v.type + "/" +
                                v.id + " already exists");
      }
      if (rc != SQLITE_DONE) return SqlError(c_.db(), "insert version");
    }
    int64_t seq = sqlite3_last_insert_rowid(c_.db());
    if (v.version > 1) {
      ASSIGN_OR_RETURN(sqlite3_stmt * s,
                       c_.Prepare("INSERT INTO superseded(seq, by_seq) SELECT seq, ? FROM current "
                                  "WHERE type=? AND id=?"));
      Binder{s}.Int(seq).Text(v.type).Text(v.id);
      RETURN_IF_ERROR(Run(c_, s, "supersede"));
    }
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * s,
                       c_.Prepare("INSERT OR REPLACE INTO current(type, id, version, seq, deleted, "
                                  "ts) VALUES(?,?,?,?,?,?)"));
      Binder{s}
          .Text(v.type)
          .Text(v.id)
          .Int(v.version)
          .Int(seq)
          .Int(v.deleted ? 1 : 0)
          .Int(v.last_updated);
      RETURN_IF_ERROR(Run(c_, s, "update current"));
    }
    if (!v.deleted) {
      RETURN_IF_ERROR(InsertIndex(v, seq, rec.index));
    }
    pending_->emplace_back(v.type, v.id);
    return Status::Ok();
  }

  // A version's index rows are held back until a search needs them, a nested transaction
  // begins or the commit, and then go in sorted by key: consecutive inserts share B-tree pages,
  // where rows in written order land on unrelated pages of eight tables and each insert walks
  // cold pages from the root (bench/RESULTS.md, sixth session).
  Status InsertIndex(const VersionRecord& v, int64_t seq, const IndexRows& rows) {
    if (!rows || rows->empty()) return Status::Ok();
    // After a flush, rows of the same call start a chunk of their own (still the call's: a
    // rollback drops every chunk from the call's first on).
    auto it = held_->chunks.back().by_type.find(v.type);
    if (it != held_->chunks.back().by_type.end() && it->second.written) {
      held_->chunks.emplace_back();
    }
    auto& of_type = held_->chunks.back().by_type[v.type];
    for (const IndexEntry& e : *rows) of_type.rows.emplace_back(seq, &e);
    of_type.owners.push_back(rows);
    return Status::Ok();
  }

  // Writes the held rows not written yet (of `types` only, if given), sorted together.
  Status FlushIndex(const std::set<std::string, std::less<>>* types = nullptr) {
    std::map<std::string_view, std::vector<std::pair<int64_t, const IndexEntry*>>> by_type;
    for (HeldIndexRows::Chunk& chunk : held_->chunks) {
      for (auto& [type, rows] : chunk.by_type) {
        if (rows.written || (types && !types->count(type))) continue;
        auto& out = by_type[type];
        out.insert(out.end(), rows.rows.begin(), rows.rows.end());
        rows.written = true;
      }
    }
    for (auto& [type, rows] : by_type) RETURN_IF_ERROR(InsertSorted(std::string(type), rows));
    return Status::Ok();
  }

  Result<SearchPage> Search(const SearchQuery& q) override {
    // Conditional references search other types than the ones being written (an import's
    // practitioners and organisations): only the types searched are flushed.
    auto types = TypesSearched(q);
    RETURN_IF_ERROR(FlushIndex(types ? &*types : nullptr));
    return SqliteView::Search(q);
  }

  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    RETURN_IF_ERROR(FlushIndex());
    return SqliteView::ReferringTypes(target_type, target_id, links);
  }

  // Rows of several versions (each with its seq), all of one resource type.
  Status InsertRows(const std::string& type,
                    const std::vector<std::pair<int64_t, const IndexEntry*>>& rows) {
    static constexpr size_t kRowsPerInsert = 64;
    static constexpr IndexKind kKinds[] = {
        IndexKind::kToken,    IndexKind::kString,    IndexKind::kDate, IndexKind::kNumber,
        IndexKind::kQuantity, IndexKind::kReference, IndexKind::kUri,  IndexKind::kText};
    std::vector<std::pair<int64_t, const IndexEntry*>> of_kind;
    for (IndexKind kind : kKinds) {
      const std::string* last_param = nullptr;  // the parameter whose number `tp` is
      int64_t tp = -1;
      of_kind.clear();
      for (const auto& r : rows) {
        if (r.second->kind == kind) of_kind.push_back(r);
      }
      for (size_t start = 0; start < of_kind.size(); start += kRowsPerInsert) {
        size_t n = std::min(kRowsPerInsert, of_kind.size() - start);
        const char* head = nullptr;
        const char* tuple = nullptr;
        switch (kind) {
          case IndexKind::kToken:
            head = "INSERT OR IGNORE INTO idx_token(tp, code, system, seq) VALUES";
            tuple = "(?,?,?,?)";
            break;
          case IndexKind::kString:
            head = "INSERT OR IGNORE INTO idx_string(tp, norm, exact, seq) VALUES";
            tuple = "(?,?,?,?)";
            break;
          case IndexKind::kDate:
            head = "INSERT OR IGNORE INTO idx_date(tp, start, end, seq) VALUES";
            tuple = "(?,?,?,?)";
            break;
          case IndexKind::kNumber:
            head = "INSERT OR IGNORE INTO idx_number(tp, value, seq) VALUES";
            tuple = "(?,?,?)";
            break;
          case IndexKind::kQuantity:
            head = "INSERT OR IGNORE INTO idx_quantity(tp, system, code, value, seq) VALUES";
            tuple = "(?,?,?,?,?)";
            break;
          case IndexKind::kReference:
            head = "INSERT OR IGNORE INTO idx_ref(tp, target_type, target, seq) VALUES";
            tuple = "(?,?,?,?)";
            break;
          case IndexKind::kUri:
            head = "INSERT OR IGNORE INTO idx_uri(tp, uri, seq) VALUES";
            tuple = "(?,?,?)";
            break;
          case IndexKind::kText:
            head = "INSERT INTO idx_fts(type, param, body, seq) VALUES";
            tuple = "(?,?,?,?)";
            break;
        }
        std::string sql = head;
        for (size_t i = 0; i < n; ++i) {
          if (i) sql += ',';
          sql += tuple;
        }
        ASSIGN_OR_RETURN(sqlite3_stmt * s, c_.Prepare(sql));
        Binder b{s};
        for (size_t i = 0; i < n; ++i) {
          const IndexEntry& e = *of_kind[start + i].second;
          if (kind == IndexKind::kText) {
            b.Borrowed(type).Borrowed(e.param);
          } else {
            // Rows come sorted by parameter: one lookup per run of rows.
            if (!last_param || *last_param != e.param) {
              ASSIGN_OR_RETURN(tp, keys_.ForWrite(c_, type, e.param));
              last_param = &e.param;
            }
            b.Int(tp);
          }
          switch (kind) {
            case IndexKind::kToken:
              b.Borrowed(e.value).Borrowed(e.system);
              break;
            case IndexKind::kString:
              b.Borrowed(e.value).Borrowed(e.text);
              break;
            case IndexKind::kDate:
              b.Int(e.start).Int(e.end);
              break;
            case IndexKind::kNumber:
              b.Real(e.number);
              break;
            case IndexKind::kQuantity:
              b.Borrowed(e.system).Borrowed(e.value).Real(e.number);
              break;
            case IndexKind::kReference:
              b.Borrowed(e.system).Borrowed(e.value);
              break;
            case IndexKind::kUri:
            case IndexKind::kText:
              b.Borrowed(e.value);
              break;
          }
          b.Int(of_kind[start + i].first);
        }
        RETURN_IF_ERROR(Run(c_, s, "insert index"));
      }
    }
    return Status::Ok();
  }

  Status PutIndexRows(const std::string& type,
                      const std::vector<std::pair<int64_t, IndexEntry>>& rows) override {
    std::vector<std::pair<int64_t, const IndexEntry*>> refs;
    refs.reserve(rows.size());
    for (const auto& [seq, e] : rows) refs.emplace_back(seq, &e);
    return InsertSorted(type, refs);
  }

  // In key order, so consecutive inserts land on the same B-tree pages.
  Status InsertSorted(const std::string& type,
                      std::vector<std::pair<int64_t, const IndexEntry*>>& rows) {
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      const IndexEntry& x = *a.second;
      const IndexEntry& y = *b.second;
      return std::tie(x.kind, x.param, x.value, x.system, x.start, x.number, a.first) <
             std::tie(y.kind, y.param, y.value, y.system, y.start, y.number, b.first);
    });
    return InsertRows(type, rows);
  }

  Status Nested(const std::function<Status(WriteTxn&)>& fn) override {
    // Rows held back so far go in before the savepoint, and the nested transaction's own rows
    // into a chunk of their own, so that rolling it back drops exactly those.
    RETURN_IF_ERROR(FlushIndex());
    RETURN_IF_ERROR(c_.Exec("SAVEPOINT nested"));
    size_t mark = pending_->size();
    size_t chunks = held_->chunks.size();
    held_->chunks.emplace_back();
    Status st = fn(*this);
    if (st.ok()) st = c_.Exec("RELEASE nested");
    if (!st.ok()) {
      held_->chunks.resize(chunks);
      (void)c_.Exec("ROLLBACK TO nested");
      (void)c_.Exec("RELEASE nested");
      keys_.RolledBack();
      pending_->resize(mark);
    }
    return st;
  }

  Status RecordRequest(const RequestRecord& r) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * s,
                     c_.Prepare("INSERT OR REPLACE INTO requests(request_id, fingerprint, ts, "
                                "status, headers, body) VALUES(?,?,?,?,?,?)"));
    Binder{s}
        .Text(r.request_id)
        .Text(r.fingerprint)
        .Int(NowMicros())
        .Int(r.status)
        .Text(r.headers_json)
        .Blob(ZstdCompress(r.body, 1));
    return Run(c_, s, "record request");
  }

 private:
  int64_t* last_ts_;
  Written* pending_;
  HeldIndexRows* held_;
};

class SqliteStore : public Store {
 public:
  explicit SqliteStore(SqliteOptions options)
      : options_(std::move(options)), cache_(options_.cache_bytes) {}

  ~SqliteStore() override {
    Close();
    ReleaseLock();
  }

  Status Open() {
    std::error_code ec;
    std::filesystem::create_directories(options_.dir, ec);
    if (ec) return Status::Unavailable("cannot create " + options_.dir + ": " + ec.message());
    // One process per store: the writer's ordering of timestamps and versions assumes it is
    // the only writer. The lock is released by the kernel if the process dies.
    std::string lock_path = (std::filesystem::path(options_.dir) / "LOCK").string();
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status::Unavailable("the store " + options_.dir +
                                 " is in use by another taproot process");
    }
    path_ = (std::filesystem::path(options_.dir) / "taproot.db").string();
    ASSIGN_OR_RETURN(writer_conn_, Connection::Open(path_, options_.sync));
    RETURN_IF_ERROR(CreateOrUpgradeSchema());
    RETURN_IF_ERROR(keys_.Load(*writer_conn_));
    RETURN_IF_ERROR(writer_conn_->Exec(
        ("PRAGMA wal_autocheckpoint=" + std::to_string(std::max(1, options_.checkpoint_pages)))
            .c_str()));
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * s,
                       writer_conn_->Prepare("SELECT coalesce(max(ts),0), (SELECT count(*) FROM "
                                             "current) FROM versions"));
      if (sqlite3_step(s) != SQLITE_ROW) return SqlError(writer_conn_->db(), "open");
      last_ts_ = sqlite3_column_int64(s, 0);
      was_empty_ = sqlite3_column_int64(s, 1) == 0;
      sqlite3_reset(s);
    }
    for (int i = 0; i < options_.read_connections; ++i) {
      ASSIGN_OR_RETURN(auto c, Connection::Open(path_, options_.sync));
      // Reads straight from the mapped file: no copy into a page cache of each connection's
      // own, which a search over a store larger than that cache refills for every request
      // (bench/RESULTS.md, sixth session: $everything +15-30 %). Only the one process that
      // holds the store's lock maps it.
      if (options_.mmap_bytes > 0) {
        RETURN_IF_ERROR(
            c->Exec(("PRAGMA mmap_size=" + std::to_string(options_.mmap_bytes)).c_str()));
      }
      idle_readers_.push_back(std::move(c));
    }
    open_ = true;
    writer_ = std::thread([this] { WriterLoop(); });
    return Status::Ok();
  }

  Status Read(const std::function<Status(ReadView&)>& fn) override { return DoRead(fn, true); }
  Status ReadStatement(const std::function<Status(ReadView&)>& fn) override {
    return DoRead(fn, false);
  }

  Status DoRead(const std::function<Status(ReadView&)>& fn, bool snapshot) {
    if (!open_) return Status::Unavailable("the store is closed");
    std::unique_ptr<Connection> conn;
    {
      std::unique_lock lock(readers_mu_);
      readers_cv_.wait(lock, [&] { return !idle_readers_.empty() || !open_; });
      if (!open_) return Status::Unavailable("the store is closed");
      conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
    Status st = snapshot ? conn->Step("BEGIN") : Status::Ok();
    if (st.ok()) {
      SqliteView view(*conn, keys_, snapshot ? nullptr : &cache_);
      st = fn(view);
      if (snapshot) {
        Status end = conn->Step("COMMIT");
        if (st.ok()) st = end;
      }
    }
    {
      std::lock_guard lock(readers_mu_);
      idle_readers_.push_back(std::move(conn));
    }
    readers_cv_.notify_one();
    return st;
  }

  Status Write(const std::function<Status(WriteTxn&)>& fn) override {
    Job job{&fn, {}};
    std::future<Status> done = job.result.get_future();
    {
      std::lock_guard lock(queue_mu_);
      if (!open_ || closing_) return Status::Unavailable("the store is closed");
      queue_.push_back(&job);
    }
    queue_cv_.notify_one();
    return done.get();
  }

  Result<StoreStats> Stats() override {
    StoreStats stats;
    stats.write_calls = write_calls_;
    stats.commits = commits_;
    RETURN_IF_ERROR(Read([&](ReadView& view) -> Status {
      auto& c = dynamic_cast<SqliteView&>(view).connection();
      ASSIGN_OR_RETURN(sqlite3_stmt * q,
                       c.Prepare("SELECT (SELECT count(*) FROM current WHERE deleted=0), "
                                 "(SELECT count(*) FROM versions)"));
      if (sqlite3_step(q) != SQLITE_ROW) return SqlError(c.db(), "stats");
      stats.resources = sqlite3_column_int64(q, 0);
      stats.versions = sqlite3_column_int64(q, 1);
      sqlite3_reset(q);
      return Status::Ok();
    }));
    return stats;
  }

  bool IsOpen() const override { return open_; }
  bool WasEmptyAtOpen() const override { return was_empty_; }

  void Close() override {
    {
      std::lock_guard lock(queue_mu_);
      if (!open_ || closing_) return;
      closing_ = true;
    }
    queue_cv_.notify_all();
    if (writer_.joinable()) writer_.join();  // drains the queue first
    {
      std::unique_lock lock(readers_mu_);
      readers_cv_.wait(lock, [&] {
        return static_cast<int>(idle_readers_.size()) == options_.read_connections;
      });
      open_ = false;
      idle_readers_.clear();
    }
    readers_cv_.notify_all();
    // A clean checkpoint leaves a compact database file.
    (void)writer_conn_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
    writer_conn_.reset();
    ReleaseLock();
  }

  void ReleaseLock() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
  }

 private:
  struct Job {
    const std::function<Status(WriteTxn&)>* fn;
    std::promise<Status> result;
  };

  // The store's schema version, 0 for a new store.
  Result<int> SchemaVersion() {
    ASSIGN_OR_RETURN(sqlite3_stmt * t,
                     writer_conn_->Prepare("SELECT 1 FROM sqlite_master WHERE name='meta'"));
    bool has_meta = sqlite3_step(t) == SQLITE_ROW;
    sqlite3_reset(t);
    if (!has_meta) return 0;
    ASSIGN_OR_RETURN(sqlite3_stmt * s,
                     writer_conn_->Prepare("SELECT value FROM meta WHERE key='schema_version'"));
    int v = sqlite3_step(s) == SQLITE_ROW ? std::stoi(ColText(s, 0)) : 0;
    sqlite3_reset(s);
    return v;
  }

  // Creates the tables of a new store, or brings an earlier version's up to date in one
  // transaction: a crash half-way leaves the store as it was.
  Status CreateOrUpgradeSchema() {
    ASSIGN_OR_RETURN(int v, SchemaVersion());
    if (v == kSchemaVersion) return Status::Ok();
    if (v > kSchemaVersion || v < 0) {
      return Status::Unavailable("store schema version " + std::to_string(v) +
                                 " is not supported by this build (expects " +
                                 std::to_string(kSchemaVersion) + ")");
    }
    Connection& c = *writer_conn_;
    RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE"));
    Status st = UpgradeSchema(v);
    if (!st.ok()) {
      (void)c.Exec("ROLLBACK");
      return st;
    }
    return c.Exec("COMMIT");
  }

  Status UpgradeSchema(int v) {
    Connection& c = *writer_conn_;
    // 2 and 3 name each row's pair in full: their tables make way for the new ones and their
    // rows are copied over with the pair's number.
    if (v == 2 || v == 3) {
      RETURN_IF_ERROR(c.Exec("DROP INDEX IF EXISTS idx_date_by_seq"));
      for (const auto& [table, columns] : kKeyedIndexTables) {
        RETURN_IF_ERROR(
            c.Exec((std::string("ALTER TABLE ") + table + " RENAME TO old_" + table).c_str()));
      }
    }
    RETURN_IF_ERROR(c.Exec(kSchema));
    if (v == 1) {
      // Carry the token rows over (they serve conditional operations) and drop the old table;
      // other parameters need a reindex.
      RETURN_IF_ERROR(
          c.Exec("INSERT OR IGNORE INTO idx_keys(type, param) SELECT DISTINCT type, param FROM "
                 "token_idx; "
                 "INSERT OR IGNORE INTO idx_token(tp, code, system, seq) "
                 "SELECT k.tp, t.code, t.system, c.seq FROM token_idx t "
                 "JOIN current c ON c.type=t.type AND c.id=t.id "
                 "JOIN idx_keys k ON k.type=t.type AND k.param=t.param; DROP TABLE token_idx"));
    }
    if (v == 2 || v == 3) {
      for (const auto& [table, columns] : kKeyedIndexTables) {
        std::string t = table;
        RETURN_IF_ERROR(c.Exec(("INSERT OR IGNORE INTO idx_keys(type, param) SELECT DISTINCT "
                                "type, param FROM old_" +
                                t)
                                   .c_str()));
        // The columns after the pair are named only by the old table (idx_keys has none of
        // them).
        RETURN_IF_ERROR(c.Exec(("INSERT INTO " + t + "(tp, " + columns + ") SELECT k.tp, " +
                                columns + " FROM old_" + t +
                                " o JOIN idx_keys k ON "
                                "k.type=o.type AND k.param=o.param; DROP TABLE old_" +
                                t)
                                   .c_str()));
      }
    }
    if (v == 1 || v == 2) {
      // Record which versions earlier writes superseded.
      RETURN_IF_ERROR(c.Exec(
          "INSERT OR IGNORE INTO superseded(seq, by_seq) SELECT v.seq, (SELECT min(w.seq) FROM "
          "versions w WHERE w.type=v.type AND w.id=v.id AND w.version>v.version) FROM versions v "
          "WHERE NOT EXISTS (SELECT 1 FROM current c WHERE c.seq=v.seq AND c.type=v.type AND "
          "c.id=v.id)"));
    }
    ASSIGN_OR_RETURN(
        sqlite3_stmt * up,
        c.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)"));
    Binder{up}.Text(std::to_string(kSchemaVersion));
    return Run(c, up, "schema version");
  }

  void WriterLoop() {
    pthread_setname_np(pthread_self(), "taproot-writer");
    std::vector<Job*> group;
    for (;;) {
      {
        std::unique_lock lock(queue_mu_);
        queue_cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
        if (queue_.empty() && closing_) return;
        size_t n = std::min(queue_.size(), static_cast<size_t>(options_.max_group));
        group.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      }
      CommitGroup(group);
    }
  }

  void CommitGroup(const std::vector<Job*>& group) {
    Connection& c = *writer_conn_;
    std::vector<Status> results(group.size());
    SqliteWriteTxn::Written pending;
    HeldIndexRows held;
    Status st = c.Exec("BEGIN IMMEDIATE");
    if (st.ok()) {
      int64_t saved_ts = last_ts_;
      for (size_t i = 0; i < group.size(); ++i) {
        Status sp = c.Exec("SAVEPOINT job");
        if (!sp.ok()) {
          results[i] = sp;
          continue;
        }
        size_t mark = pending.size();
        size_t chunks = held.chunks.size();
        auto unwritten = held.Unwritten();
        held.chunks.emplace_back();
        SqliteWriteTxn txn(c, keys_, &last_ts_, &pending, &held);
        results[i] = (*group[i]->fn)(txn);
        if (results[i].ok()) {
          results[i] = c.Exec("RELEASE job");
        }
        if (!results[i].ok()) {
          (void)c.Exec("ROLLBACK TO job");
          (void)c.Exec("RELEASE job");
          keys_.RolledBack();
          pending.resize(mark);
          held.chunks.resize(chunks);
          for (const auto& [k, type] : unwritten) held.chunks[k].by_type[type].written = false;
        }
      }
      // Now and then, drop X-Request-ID records too old for a retry to arrive.
      if (st.ok() && ++groups_since_prune_ >= 1000) {
        groups_since_prune_ = 0;
        auto prune = c.Prepare("DELETE FROM requests WHERE ts < ?");
        if (prune.ok()) {
          Binder{*prune}.Int(NowMicros() - options_.request_log_ttl_seconds * 1000000);
          (void)Run(c, *prune, "prune requests");
        }
      }
      st = SqliteWriteTxn(c, keys_, &last_ts_, &pending, &held).FlushIndex();
      if (st.ok()) {
        // No cache entry for what this group wrote may exist while its versions become
        // visible.
        cache_.BeginCommit();
        for (const auto& [type, id] : pending) cache_.Invalidate(type, id);
        st = c.Exec("COMMIT");
        cache_.EndCommit();
      }
      if (!st.ok()) {
        (void)c.Exec("ROLLBACK");
        keys_.RolledBack();
        last_ts_ = saved_ts;
      } else {
        keys_.Committed();
        commits_++;
        write_calls_ += static_cast<int64_t>(group.size());
      }
    }
    // Let go of the callers' index rows before they resume: the last owner, which frees them,
    // is then the caller, not this thread.
    held.chunks.clear();
    for (size_t i = 0; i < group.size(); ++i) {
      if (!st.ok()) {
        group[i]->result.set_value(
            results[i].ok() ? Status::Unavailable("commit failed: " + st.message()) : results[i]);
      } else {
        group[i]->result.set_value(results[i]);
      }
    }
  }

  SqliteOptions options_;
  CurrentCache cache_;
  std::string path_;
  std::unique_ptr<Connection> writer_conn_;
  IndexKeys keys_;
  int64_t last_ts_ = 0;         // writer thread only (and Open)
  int groups_since_prune_ = 0;  // writer thread only
  std::atomic<int64_t> commits_{0}, write_calls_{0};
  bool was_empty_ = false;
  int lock_fd_ = -1;
  std::atomic<bool> open_{false};

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Job*> queue_;
  bool closing_ = false;
  std::thread writer_;

  std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  // Memory statistics put a global mutex around every SQLite allocation, which the reader
  // threads then contend on; we do not use them. Must run before SQLite initialises (it fails
  // harmlessly if something else initialised it first).
  static std::once_flag configured;
  std::call_once(configured, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  auto store = std::make_unique<SqliteStore>(options);
  RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace taproot::store
