#include "store/postgres/postgres_store.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/clock.h"
#include "common/compress.h"
#include "common/log.h"
#include "store/postgres/pg.h"
#include "store/sql/search_sql.h"
#include "store/sqlite/current_cache.h"

namespace taproot::store {
namespace {

using sql::SqlArg;

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

// Versioned migrations, applied in order, each once, each in its own transaction. Never edit
// one that has shipped: add the next.
//
// Text key columns use the "C" collation: byte order, which the starts-with ranges of the
// search compiler rely on, and which is the same on every machine.
const Migration kMigrations[] = {
    {1, "versions, current versions, search index tables, request log", R"sql(
CREATE EXTENSION IF NOT EXISTS unaccent;
-- Lower case without accents: how full-text words are compared (as SQLite's unicode61 tokenizer
-- with remove_diacritics does).
CREATE OR REPLACE FUNCTION taproot_fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
  PARALLEL SAFE AS $$ SELECT lower(unaccent($1)) $$;
-- Every version of every resource, in commit order (seq). Bodies are zstd-compressed JSON.
CREATE TABLE versions(
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  version bigint NOT NULL,
  ts bigint NOT NULL,
  deleted smallint NOT NULL,
  method text NOT NULL,
  body bytea,
  patient text COLLATE "C" NOT NULL,
  UNIQUE(type, id, version));
CREATE INDEX versions_by_type ON versions(type, seq);
CREATE INDEX versions_by_ts ON versions(ts);
-- The current version of each resource.
CREATE TABLE current(
  type text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  version bigint NOT NULL,
  seq bigint NOT NULL,
  deleted smallint NOT NULL,
  ts bigint NOT NULL,
  patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, id));
-- Search index rows, one table per kind, each row with the seq of the version that produced it
-- (see the SQLite schema in store/sqlite/sqlite_store.cc: the same tables, the same keys).
-- Every row of a resource in a patient's compartment carries that patient's id (`patient`,
-- empty outside every compartment): the column a distributed PostgreSQL shards by
-- (docs/scaling.md).
CREATE TABLE idx_token(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  code text COLLATE "C" NOT NULL, system text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, code, system, seq));
CREATE TABLE idx_string(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  norm text COLLATE "C" NOT NULL, exact text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, norm, exact, seq));
CREATE TABLE idx_date(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  start bigint NOT NULL, "end" bigint NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, start, "end", seq));
CREATE INDEX idx_date_by_seq ON idx_date(seq);
CREATE TABLE idx_number(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  value double precision NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, value, seq));
CREATE TABLE idx_quantity(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  code text COLLATE "C" NOT NULL, system text COLLATE "C" NOT NULL,
  value double precision NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, code, system, value, seq));
CREATE TABLE idx_ref(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  target text COLLATE "C" NOT NULL, target_type text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, target, target_type, seq));
CREATE TABLE idx_uri(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
  uri text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL,
  PRIMARY KEY(type, param, uri, seq));
-- Full text (_text, _content): words folded by taproot_fold, in a GIN index.
CREATE TABLE idx_fts(
  type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL, seq bigint NOT NULL,
  body tsvector NOT NULL, patient text COLLATE "C" NOT NULL);
CREATE INDEX idx_fts_body ON idx_fts USING gin(body);
CREATE INDEX idx_fts_seq ON idx_fts(seq);
-- Versions no longer current, and the version that replaced them.
CREATE TABLE superseded(seq bigint PRIMARY KEY, by_seq bigint NOT NULL,
  patient text COLLATE "C" NOT NULL);
-- Applied write requests by X-Request-ID.
CREATE TABLE requests(
  request_id text PRIMARY KEY,
  fingerprint text NOT NULL,
  ts bigint NOT NULL,
  status integer NOT NULL,
  headers text NOT NULL,
  body bytea NOT NULL);
CREATE INDEX requests_by_ts ON requests(ts);
)sql"},
    {2, "index rows name their (type, param) pair by a number (idx_keys)", R"sql(
-- Each (resource type, search parameter) pair of the index rows, numbered: a row carries the
-- number (tp) instead of both names, which makes rows smaller and key comparisons cheaper (an
-- integer first instead of two strings). Numbers are given once and never reused
-- (PgIndexKeys in store/postgres/postgres_store.cc). Full-text rows keep the names.
CREATE TABLE idx_keys(
  tp integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  type text COLLATE "C" NOT NULL,
  param text COLLATE "C" NOT NULL,
  UNIQUE(type, param));
INSERT INTO idx_keys(type, param)
  SELECT type, param FROM idx_token UNION SELECT type, param FROM idx_string
  UNION SELECT type, param FROM idx_date UNION SELECT type, param FROM idx_number
  UNION SELECT type, param FROM idx_quantity UNION SELECT type, param FROM idx_ref
  UNION SELECT type, param FROM idx_uri ORDER BY 1, 2;
-- Each table is copied in key order and its key built afterwards, which is faster than
-- inserting into a live B-tree.
CREATE TABLE idx_token_n(tp integer NOT NULL, code text COLLATE "C" NOT NULL,
  system text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL);
INSERT INTO idx_token_n SELECT k.tp, t.code, t.system, t.seq, t.patient
  FROM idx_token t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3, 4;
DROP TABLE idx_token;
ALTER TABLE idx_token_n RENAME TO idx_token;
ALTER TABLE idx_token ADD PRIMARY KEY (tp, code, system, seq);
CREATE TABLE idx_string_n(tp integer NOT NULL, norm text COLLATE "C" NOT NULL,
  exact text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL);
INSERT INTO idx_string_n SELECT k.tp, t.norm, t.exact, t.seq, t.patient
  FROM idx_string t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3, 4;
DROP TABLE idx_string;
ALTER TABLE idx_string_n RENAME TO idx_string;
ALTER TABLE idx_string ADD PRIMARY KEY (tp, norm, exact, seq);
CREATE TABLE idx_date_n(tp integer NOT NULL, start bigint NOT NULL, "end" bigint NOT NULL,
  seq bigint NOT NULL, patient text COLLATE "C" NOT NULL);
INSERT INTO idx_date_n SELECT k.tp, t.start, t."end", t.seq, t.patient
  FROM idx_date t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3, 4;
DROP TABLE idx_date;
ALTER TABLE idx_date_n RENAME TO idx_date;
ALTER TABLE idx_date ADD PRIMARY KEY (tp, start, "end", seq);
CREATE INDEX idx_date_by_seq ON idx_date(seq);
CREATE TABLE idx_number_n(tp integer NOT NULL, value double precision NOT NULL,
  seq bigint NOT NULL, patient text COLLATE "C" NOT NULL);
INSERT INTO idx_number_n SELECT k.tp, t.value, t.seq, t.patient
  FROM idx_number t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3;
DROP TABLE idx_number;
ALTER TABLE idx_number_n RENAME TO idx_number;
ALTER TABLE idx_number ADD PRIMARY KEY (tp, value, seq);
CREATE TABLE idx_quantity_n(tp integer NOT NULL, code text COLLATE "C" NOT NULL,
  system text COLLATE "C" NOT NULL, value double precision NOT NULL, seq bigint NOT NULL,
  patient text COLLATE "C" NOT NULL);
INSERT INTO idx_quantity_n SELECT k.tp, t.code, t.system, t.value, t.seq, t.patient
  FROM idx_quantity t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3, 4, 5;
DROP TABLE idx_quantity;
ALTER TABLE idx_quantity_n RENAME TO idx_quantity;
ALTER TABLE idx_quantity ADD PRIMARY KEY (tp, code, system, value, seq);
CREATE TABLE idx_ref_n(tp integer NOT NULL, target text COLLATE "C" NOT NULL,
  target_type text COLLATE "C" NOT NULL, seq bigint NOT NULL, patient text COLLATE "C" NOT NULL);
INSERT INTO idx_ref_n SELECT k.tp, t.target, t.target_type, t.seq, t.patient
  FROM idx_ref t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3, 4;
DROP TABLE idx_ref;
ALTER TABLE idx_ref_n RENAME TO idx_ref;
ALTER TABLE idx_ref ADD PRIMARY KEY (tp, target, target_type, seq);
CREATE TABLE idx_uri_n(tp integer NOT NULL, uri text COLLATE "C" NOT NULL, seq bigint NOT NULL,
  patient text COLLATE "C" NOT NULL);
INSERT INTO idx_uri_n SELECT k.tp, t.uri, t.seq, t.patient
  FROM idx_uri t JOIN idx_keys k USING (type, param) ORDER BY 1, 2, 3;
DROP TABLE idx_uri;
ALTER TABLE idx_uri_n RENAME TO idx_uri;
ALTER TABLE idx_uri ADD PRIMARY KEY (tp, uri, seq);
)sql"},
    {3, "a patient's rows of a code (idx_token_by_patient)", R"sql(
-- A patient's resources of one code, in seq order: how `Observation?subject=Patient/1&code=x`
-- starts when subject keys the rows to patients (IndexClause::patient_keyed), instead of
-- probing every resource that refers to the patient for the code.
CREATE INDEX idx_token_by_patient ON idx_token(tp, code, system, patient, seq);
)sql"},
};

// Held (as a session lock) while migrations run, so that nodes starting together take turns.
constexpr int64_t kMigrationLock = 0x7461707230303031;  // "tapr0001"

// A B-tree entry must fit in a third of a page (about 2,700 bytes). Longer index values are cut
// at a character boundary: such a value still matches by prefix, not as a whole.
constexpr size_t kMaxKeyBytes = 1000;

std::string_view KeyText(std::string_view s) {
  if (s.size() <= kMaxKeyBytes) return s;
  size_t n = kMaxKeyBytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

pg::Params ToParams(const std::vector<SqlArg>& args) {
  pg::Params p;
  for (const SqlArg& a : args) {
    if (a.kind == SqlArg::kText) p.Text(a.text);
    if (a.kind == SqlArg::kInt) p.Int(a.i);
    if (a.kind == SqlArg::kReal) p.Real(a.d);
  }
  return p;
}

Result<VersionRecord> RowToVersion(const pg::Rows& r, int row) {
  VersionRecord v;
  v.type = r.Text(row, 0);
  v.id = r.Text(row, 1);
  v.version = r.Int(row, 2);
  v.last_updated = r.Int(row, 3);
  v.deleted = r.Int(row, 4) != 0;
  v.method = r.Text(row, 5);
  std::string_view body = r.Bytes(row, 6);
  if (!body.empty()) {
    ASSIGN_OR_RETURN(v.json, ZstdDecompress(body));
  }
  v.seq = r.Int(row, 7);
  return v;
}

Result<std::vector<VersionRecord>> AllVersions(const pg::Rows& r) {
  std::vector<VersionRecord> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    ASSIGN_OR_RETURN(VersionRecord v, RowToVersion(r, i));
    out.push_back(std::move(v));
  }
  return out;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

void AppendClauseKey(const IndexClause& c, std::string& out) {
  out += c.param;
  out += '\x1f';
  out += std::to_string(static_cast<int>(c.kind));
  if (c.negate) out += "!";
  if (c.missing) out += *c.missing ? "?1" : "?0";
  for (const std::string& p : c.any_param) out += "|" + p;
  for (const IndexPredicate& p : c.any_of) {
    out += '\x1e';
    out += p.system ? "s" + *p.system : "-";
    out += '\x1f' + p.value + '\x1f' + p.param_suffix + '\x1f';
    out += std::to_string(static_cast<int>(p.match)) + std::to_string(static_cast<int>(p.prefix));
    out += std::to_string(p.start) + ":" + std::to_string(p.end) + ":" + std::to_string(p.low) +
           ":" + std::to_string(p.high);
    for (const auto& [system, code] : p.codes) out += '\x1d' + system + '|' + code;
  }
  for (const auto& [type, next] : c.chain) {
    out += "\x1c" + type + "(";
    AppendClauseKey(*next, out);
    out += ")";
  }
  if (c.has) {
    out += "\x1c_has:" + c.has_type + "(";
    AppendClauseKey(*c.has, out);
    out += ")";
  }
}

// The criteria of a search, as text: equal for two searches that ask the same thing.
std::string CriteriaKey(const SearchQuery& q) {
  std::string out = q.type;
  for (const std::string& id : q.ids) out += "\x1did=" + id;
  for (const IndexClause& c : q.clauses) {
    out += '\x1e';
    AppendClauseKey(c, out);
  }
  return out;
}

// The numbers of the (type, param) pairs of the index rows (the idx_keys table), shared by every
// node on the database. A pair is numbered by a statement of its own, committed on a connection
// of its own before any row carries the number: the write that needs it may still roll back,
// and the number must outlive it. So a number never changes meaning, and any node that meets a
// row can name its pair. Each node remembers the pairs it has seen.
//
// A pair this node has not seen may have been numbered by another node. A search inside a write
// (a conditional create's criteria) asks the database each time, so that two nodes never both
// create. A read-only search takes the pair as absent (-1, which matches nothing) if the whole
// table was read less than a second ago, and reads it again otherwise: `$everything` asks for
// every compartment link, most of which no row has, and must not cost a query each. So a
// parameter indexed for the very first time on another node is found here within a second.
//
// Thread-safe.
class PgIndexKeys {
 public:
  explicit PgIndexKeys(std::string url) : url_(std::move(url)) {}

  // Searches: the pair's number, or -1; asked of `c` (the search's own connection and
  // snapshot) when this node has not seen the pair. `exact`: always ask then.
  int64_t Find(pg::Conn& c, std::string_view type, std::string_view param, bool exact) {
    static constexpr int64_t kAbsentForMicros = 1000000;
    std::string name = sql::PairName(type, param);
    int64_t now = NowMicros();
    {
      std::lock_guard lock(mu_);
      auto it = keys_.find(name);
      if (it != keys_.end()) return it->second;
      if (!exact && loaded_at_ > now - kAbsentForMicros) return -1;
    }
    // A failure here is the connection's: the search's next statement reports it.
    if (exact) {
      auto r = c.Prepared("SELECT tp FROM idx_keys WHERE type=$1 AND param=$2",
                          pg::Params().Text(std::string(type)).Text(std::string(param)));
      if (!r.ok() || r->rows() == 0) return -1;
      std::lock_guard lock(mu_);
      return keys_.emplace(std::move(name), r->Int(0, 0)).first->second;
    }
    auto r = c.Prepared("SELECT tp, type, param FROM idx_keys");
    if (!r.ok()) return -1;
    std::lock_guard lock(mu_);
    for (int row = 0; row < r->rows(); ++row) {
      keys_.emplace(sql::PairName(r->Bytes(row, 1), r->Bytes(row, 2)), r->Int(row, 0));
    }
    loaded_at_ = std::max(loaded_at_, now);
    auto it = keys_.find(name);
    return it == keys_.end() ? -1 : it->second;
  }

  // Writes: the number of each (type, param) pair, numbering those never seen before.
  Result<std::vector<int64_t>> ForWrite(
      const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
    std::vector<int64_t> out(pairs.size(), -1);
    std::vector<size_t> missing;
    {
      std::lock_guard lock(mu_);
      for (size_t i = 0; i < pairs.size(); ++i) {
        auto it = keys_.find(sql::PairName(pairs[i].first, pairs[i].second));
        if (it == keys_.end()) {
          missing.push_back(i);
        } else {
          out[i] = it->second;
        }
      }
    }
    if (missing.empty()) return out;
    std::lock_guard numbering(numbering_mu_);
    if (!conn_ || !conn_->Healthy()) {
      if (conn_) {
        RETURN_IF_ERROR(conn_->Reset());
      } else {
        ASSIGN_OR_RETURN(conn_, pg::Conn::Open(url_));
      }
    }
    // New pairs are inserted; pairs numbered already are read back. One statement, committed
    // alone (no transaction is open on this connection). A pair another node inserts after the
    // statement's snapshot is skipped by the insert and unseen by the read: asked again, it is
    // seen.
    for (int attempt = 0; attempt < 3 && !missing.empty(); ++attempt) {
      std::vector<std::string_view> types, params;
      for (size_t i : missing) {
        types.push_back(pairs[i].first);
        params.push_back(pairs[i].second);
      }
      pg::Params p;
      p.Text(pg::TextArray(types)).Text(pg::TextArray(params));
      ASSIGN_OR_RETURN(
          pg::Rows r,
          conn_->Prepared("WITH u(type, param) AS (SELECT * FROM unnest($1::text[], $2::text[])), "
                          "i AS (INSERT INTO idx_keys(type, param) SELECT type, param FROM u ON "
                          "CONFLICT DO NOTHING RETURNING tp, type, param) SELECT tp, type, param "
                          "FROM i UNION ALL SELECT k.tp, k.type, k.param FROM idx_keys k JOIN u "
                          "USING (type, param)",
                          p));
      std::lock_guard lock(mu_);
      for (int row = 0; row < r.rows(); ++row) {
        keys_.emplace(sql::PairName(r.Bytes(row, 1), r.Bytes(row, 2)), r.Int(row, 0));
      }
      std::vector<size_t> still;
      for (size_t i : missing) {
        auto it = keys_.find(sql::PairName(pairs[i].first, pairs[i].second));
        if (it == keys_.end()) {
          still.push_back(i);
        } else {
          out[i] = it->second;
        }
      }
      missing = std::move(still);
    }
    if (!missing.empty()) {
      return Status::Make(StatusCode::kAborted, "index keys could not be numbered; retry");
    }
    return out;
  }

 private:
  const std::string url_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> keys_;
  int64_t loaded_at_ = 0;    // when the whole table was last read (NowMicros)
  std::mutex numbering_mu_;  // held while conn_ numbers pairs
  std::unique_ptr<pg::Conn> conn_;
};

class PgView;

// Runs the search compiler's statements as prepared statements, one per query shape and
// connection, planned once (pg.cc's session setup). The statements already fix the plan (a
// driving clause, then a lookup per candidate: search_sql.cc's PerRow), so a generic plan
// loses little, and planning them afresh cost more than running them (4.6 ms against 3.2 ms
// for a patient's observations by code and date; bench/RESULTS.md).
class PgRunner : public sql::SqlRunner {
 public:
  // `exact`: the search decides a write (PgIndexKeys::Find).
  explicit PgRunner(PgView& view, bool exact = false) : view_(view), exact_(exact) {}
  Result<int64_t> NewestSeq() override;
  Result<int64_t> QueryInt(const std::string& sql, const std::vector<SqlArg>& args) override;
  Result<std::vector<VersionRecord>> QueryVersions(const std::string& sql,
                                                   const std::vector<SqlArg>& args,
                                                   int64_t* extra) override;
  Result<std::vector<std::string>> QueryTexts(const std::string& sql,
                                              const std::vector<SqlArg>& args) override;
  Result<std::vector<BatchResult>> QueryBatch(const std::vector<BatchStatement>& batch) override;
  Result<std::vector<std::string>> Explain(const std::string& sql,
                                           const std::vector<SqlArg>& args) override;
  int64_t IndexKey(std::string_view type, std::string_view param) override;

 private:
  // A compiler statement ("?" placeholders, SqlArgs) in the view.
  Result<pg::Rows> Run(const std::string& sql, const std::vector<SqlArg>& args);
  // What QueryInt, QueryVersions (with `extra`) and QueryTexts make of a statement's rows.
  static Result<int64_t> OneInt(const pg::Rows& r);
  static Result<std::vector<VersionRecord>> Versions(const pg::Rows& r, int64_t* extra);
  static std::vector<std::string> Texts(const pg::Rows& r);

  PgView& view_;
  bool exact_;
};

class PgView : public virtual ReadView {
 public:
  // `snapshot`: the view reads one REPEATABLE READ snapshot, begun with its first statement
  // (a callback that reads nothing, such as a Bundle without conditional references, costs no
  // round trip). Otherwise each statement stands alone, or the caller's transaction is open.
  PgView(pg::Conn& c, PgIndexKeys& keys, bool snapshot = false)
      : c_(c), keys_(keys), snapshot_(snapshot) {}

  // Runs a prepared statement. The snapshot's first statement travels with its BEGIN, in one
  // round trip: a search of one statement costs one round trip (its COMMIT rides on the
  // connection's next one: Conn::DeferCommit).
  Result<pg::Rows> Run(const std::string& sql, const pg::Params& params = {}) {
    if (!snapshot_ || started_) return c_.Prepared(sql, params);
    ASSIGN_OR_RETURN(std::vector<pg::Rows> rows, RunMany({{sql, params}}));
    return std::move(rows.front());
  }

  // Several prepared statements in one round trip (with the snapshot's BEGIN if it is the first).
  // On failure, a transaction left open is rolled back when the pool takes the connection back.
  Result<std::vector<pg::Rows>> RunMany(const std::vector<pg::Conn::Statement>& statements) {
    if (!snapshot_ || started_) return c_.Pipeline({}, statements);
    ASSIGN_OR_RETURN(std::vector<pg::Rows> rows, c_.Pipeline({kBegin}, statements));
    started_ = true;
    return rows;
  }

  // The newest seq this view can see: the snapshot's (remembered: later pages ask for it
  // again), or, outside a snapshot, the newest now.
  Result<int64_t> NewestSeq() {
    if (newest_) return *newest_;
    ASSIGN_OR_RETURN(pg::Rows r, Run(kNewest));
    if (snapshot_) newest_ = r.Int(0, 0);
    return r.Int(0, 0);
  }
  bool started() const { return started_; }

  Result<std::optional<VersionRecord>> ReadCurrent(const std::string& type,
                                                   const std::string& id) override {
    ASSIGN_OR_RETURN(pg::Rows r, Run("SELECT type, id, version, ts, deleted, method, "
                                     "body, seq FROM versions WHERE seq=(SELECT seq FROM "
                                     "current WHERE type=$1 AND id=$2)",
                                     pg::Params().Text(type).Text(id)));
    return One(r);
  }

  Result<std::optional<VersionRecord>> ReadVersion(const std::string& type, const std::string& id,
                                                   int64_t version) override {
    ASSIGN_OR_RETURN(pg::Rows r, Run("SELECT type, id, version, ts, deleted, method, body, seq "
                                     "FROM versions WHERE type=$1 AND id=$2 AND version=$3::bigint",
                                     pg::Params().Text(type).Text(id).Int(version)));
    return One(r);
  }

  Result<SearchPage> Search(const SearchQuery& q) override {
    PgRunner runner(*this, in_write_);
    return sql::RunSearch(sql::Dialect::kPostgres, q, runner);
  }

  Result<std::vector<SearchPage>> SearchBatch(const std::vector<SearchQuery>& queries) override {
    // A write's searches may decide a create (PgWriteTxn::Search): one at a time.
    if (in_write_) return ReadView::SearchBatch(queries);
    PgRunner runner(*this);
    return sql::RunSearchBatch(sql::Dialect::kPostgres, queries, runner);
  }

  Result<HistoryPage> History(const HistoryQuery& q) override {
    PgRunner runner(*this);
    return sql::RunHistory(q, runner);
  }

  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    PgRunner runner(*this);
    return sql::RunReferringTypes(sql::Dialect::kPostgres, target_type, target_id, links, runner);
  }

  Result<std::vector<VersionRecord>> ScanVersions(int64_t after_seq, int64_t limit) override {
    ASSIGN_OR_RETURN(pg::Rows r, Run("SELECT type, id, version, ts, deleted, method, "
                                     "body, seq FROM versions WHERE seq>$1::bigint ORDER "
                                     "BY seq LIMIT $2::bigint",
                                     pg::Params().Int(after_seq).Int(limit)));
    return AllVersions(r);
  }

  Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) override {
    ASSIGN_OR_RETURN(pg::Rows r, Run("SELECT fingerprint, status, headers, body FROM "
                                     "requests WHERE request_id=$1",
                                     pg::Params().Text(request_id)));
    if (r.rows() == 0) return std::optional<RequestRecord>();
    RequestRecord rec;
    rec.request_id = request_id;
    rec.fingerprint = r.Text(0, 0);
    rec.status = static_cast<int>(r.Int(0, 1));
    rec.headers_json = r.Text(0, 2);
    ASSIGN_OR_RETURN(rec.body, ZstdDecompress(r.Bytes(0, 3)));
    return std::optional<RequestRecord>(std::move(rec));
  }

  pg::Conn& conn() { return c_; }
  PgIndexKeys& keys() { return keys_; }

 protected:
  static Result<std::optional<VersionRecord>> One(const pg::Rows& r) {
    if (r.rows() == 0) return std::optional<VersionRecord>();
    ASSIGN_OR_RETURN(VersionRecord v, RowToVersion(r, 0));
    return std::optional<VersionRecord>(std::move(v));
  }

  static inline const std::string kBegin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
  // From a prepared statement, which costs less than planning a max() each time.
  static inline const std::string kNewest = "SELECT coalesce(max(seq), 0) FROM versions";

  pg::Conn& c_;
  PgIndexKeys& keys_;
  bool snapshot_ = false, started_ = false;
  bool in_write_ = false;  // a write transaction's view: its searches may decide a create
  std::optional<int64_t> newest_;
};

Result<pg::Rows> PgRunner::Run(const std::string& sql, const std::vector<SqlArg>& args) {
  return view_.Run(sql::NumberPlaceholders(sql), ToParams(args));
}
Result<int64_t> PgRunner::OneInt(const pg::Rows& r) {
  if (r.rows() != 1) return Status::Internal("search: expected one row");
  return r.Int(0, 0);
}
Result<std::vector<VersionRecord>> PgRunner::Versions(const pg::Rows& r, int64_t* extra) {
  if (extra && r.rows() > 0) *extra = r.Int(0, 8);
  return AllVersions(r);
}
std::vector<std::string> PgRunner::Texts(const pg::Rows& r) {
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Text(i, 0));
  return out;
}

Result<int64_t> PgRunner::NewestSeq() { return view_.NewestSeq(); }
Result<int64_t> PgRunner::QueryInt(const std::string& sql, const std::vector<SqlArg>& args) {
  ASSIGN_OR_RETURN(pg::Rows r, Run(sql, args));
  return OneInt(r);
}
Result<std::vector<VersionRecord>> PgRunner::QueryVersions(const std::string& sql,
                                                           const std::vector<SqlArg>& args,
                                                           int64_t* extra) {
  ASSIGN_OR_RETURN(pg::Rows r, Run(sql, args));
  return Versions(r, extra);
}
Result<std::vector<std::string>> PgRunner::QueryTexts(const std::string& sql,
                                                      const std::vector<SqlArg>& args) {
  ASSIGN_OR_RETURN(pg::Rows r, Run(sql, args));
  return Texts(r);
}
Result<std::vector<std::string>> PgRunner::Explain(const std::string& sql,
                                                   const std::vector<SqlArg>& args) {
  // In the snapshot, like the statement it explains.
  RETURN_IF_ERROR(view_.NewestSeq().status());
  ASSIGN_OR_RETURN(pg::Rows r,
                   view_.conn().Query("EXPLAIN " + sql::NumberPlaceholders(sql), ToParams(args)));
  return Texts(r);
}
Result<std::vector<sql::SqlRunner::BatchResult>> PgRunner::QueryBatch(
    const std::vector<BatchStatement>& batch) {
  std::vector<std::string> sqls;
  std::vector<pg::Params> params;
  sqls.reserve(batch.size());  // the statements below point into both
  params.reserve(batch.size());
  std::vector<pg::Conn::Statement> statements;
  for (const BatchStatement& s : batch) {
    sqls.push_back(sql::NumberPlaceholders(s.sql));
    params.push_back(ToParams(s.args));
    statements.push_back({sqls.back(), params.back()});
  }
  ASSIGN_OR_RETURN(std::vector<pg::Rows> rows, view_.RunMany(statements));
  std::vector<BatchResult> out(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].versions) {
      ASSIGN_OR_RETURN(out[i].versions,
                       Versions(rows[i], batch[i].extra ? &out[i].number : nullptr));
    } else {
      ASSIGN_OR_RETURN(out[i].number, OneInt(rows[i]));
    }
  }
  return out;
}

int64_t PgRunner::IndexKey(std::string_view type, std::string_view param) {
  return view_.keys().Find(view_.conn(), type, param, exact_);
}

class PgWriteTxn : public PgView, public WriteTxn {
 public:
  PgWriteTxn(pg::Conn& c, PgIndexKeys& keys, std::atomic<int64_t>& last_ts)
      : PgView(c, keys), last_ts_(last_ts) {
    in_write_ = true;
  }

  int64_t NextTimestamp() override {
    // Strictly increasing within this process. Across processes on one database, timestamps
    // are as good as the machines' clocks (run NTP); versions stay ordered by seq regardless.
    int64_t now = NowMicros();
    int64_t last = last_ts_.load();
    int64_t next;
    do {
      next = now > last ? now : last + 1;
    } while (!last_ts_.compare_exchange_weak(last, next));
    return next;
  }

  // Versions, like their index rows, are held back and written together (Flush): a bundle's
  // hundreds of creates cost a few statements instead of hundreds of round trips. A second
  // version of a resource already waiting, and any read in the transaction, flush first.
  Status Put(const WriteRecord& rec) override {
    const VersionRecord& v = rec.version;
    std::string key = v.type + "/" + v.id;
    if (pending_keys_.count(key)) RETURN_IF_ERROR(Flush());
    PendingVersion pv;
    pv.version = v;
    pv.version.json.clear();
    pv.body = rec.compressed_body.empty() && !v.json.empty() ? ZstdCompress(v.json, 1)
                                                             : std::string(rec.compressed_body);
    if (v.deleted) pv.body.clear();
    pv.patient = rec.patient;
    if (!v.deleted) pv.index = rec.index;  // shared with the caller, not copied
    pending_versions_.push_back(std::move(pv));
    written_.push_back(key);
    pending_keys_.insert(std::move(key));
    if (pending_versions_.size() >= kMaxPendingVersions) return Flush();
    return Status::Ok();
  }

  // Writes the versions Put holds back, in the order they were put: for each, the version row,
  // the version it supersedes and the current pointer. The CTEs see one snapshot, so `s` reads
  // the current rows as they were before `c` moves them. A version another transaction wrote
  // first (the insert waits for it to end) is not inserted and comes back missing.
  Status FlushVersions() {
    if (pending_versions_.empty()) return Status::Ok();
    static constexpr size_t kPerStatement = 1000;  // 8 parameters each, well under 65,535
    for (size_t start = 0; start < pending_versions_.size(); start += kPerStatement) {
      size_t end = std::min(pending_versions_.size(), start + kPerStatement);
      pg::Params p;
      std::string values;
      int n = 0;
      for (size_t i = start; i < end; ++i) {
        const PendingVersion& pv = pending_versions_[i];
        const VersionRecord& v = pv.version;
        p.Text(v.type).Text(v.id).Int(v.version).Int(v.last_updated).Int(v.deleted ? 1 : 0);
        p.Text(v.method);
        if (pv.body.empty()) {
          p.Null();
        } else {
          p.Bytes(pv.body);
        }
        p.Text(pv.patient);
        auto at = [&](int k) { return "$" + std::to_string(n + k); };
        values += (i > start ? ", (" : "(") + at(1) + "::text, " + at(2) + "::text, " + at(3) +
                  "::bigint, " + at(4) + "::bigint, " + at(5) + "::smallint, " + at(6) +
                  "::text, " + at(7) + "::bytea, " + at(8) + "::text, " +
                  std::to_string(i - start) + ")";
        n += 8;
      }
      std::string sql =
          "WITH i(type, id, version, ts, deleted, method, body, patient, ord) AS (VALUES " +
          values +
          "), v AS (INSERT INTO versions(type, id, version, ts, deleted, method, body, patient) "
          "SELECT i.type, i.id, i.version, i.ts, i.deleted, i.method, i.body, "
          "coalesce(nullif(i.patient, ''), (SELECT c.patient FROM current c WHERE c.type=i.type "
          "AND c.id=i.id), '') FROM i ORDER BY i.ord "
          "ON CONFLICT (type, id, version) DO NOTHING RETURNING seq, type, id, patient), "
          "s AS (INSERT INTO superseded(seq, by_seq, patient) SELECT c.seq, v.seq, c.patient "
          "FROM current c JOIN v ON c.type=v.type AND c.id=v.id), "
          "c AS (INSERT INTO current(type, id, version, seq, deleted, ts, patient) SELECT "
          "i.type, i.id, i.version, v.seq, i.deleted, i.ts, v.patient FROM v JOIN i ON "
          "i.type=v.type AND i.id=v.id ON CONFLICT (type, id) DO UPDATE SET "
          "version=EXCLUDED.version, seq=EXCLUDED.seq, deleted=EXCLUDED.deleted, ts=EXCLUDED.ts, "
          "patient=EXCLUDED.patient) "
          "SELECT type, id, seq, patient FROM v";
      // A REST write puts one or a few versions: its statement is prepared once per size (and
      // planning it each time cost as much as running it); a bulk load's are planned each time.
      static constexpr size_t kPreparedUpTo = 16;
      ASSIGN_OR_RETURN(pg::Rows r,
                       end - start <= kPreparedUpTo ? c_.Prepared(sql, p) : c_.Query(sql, p));
      std::unordered_map<std::string, std::pair<int64_t, std::string>> written;
      for (int row = 0; row < r.rows(); ++row) {
        written[r.Text(row, 0) + "/" + r.Text(row, 1)] = {r.Int(row, 2), r.Text(row, 3)};
      }
      for (size_t i = start; i < end; ++i) {
        PendingVersion& pv = pending_versions_[i];
        auto it = written.find(pv.version.type + "/" + pv.version.id);
        if (it == written.end()) {
          // The caller read the resource before a concurrent write (maybe on another node)
          // added this version: preparing the request again reads the new one.
          return Status::Make(StatusCode::kAborted,
                              "version " + std::to_string(pv.version.version) + " of " +
                                  pv.version.type + "/" + pv.version.id +
                                  " was written by a concurrent request");
        }
        // Index rows wait for one statement with every version's (FlushRows).
        if (pv.index && !pv.index->empty()) {
          pending_.push_back({it->second.first, pv.version.type, pv.index, it->second.second});
        }
      }
    }
    pending_versions_.clear();
    pending_keys_.clear();
    return Status::Ok();
  }

  // Writes everything Put holds back. Runs before anything in the transaction reads, at the
  // end of a nested transaction and before COMMIT.
  Status Flush() {
    Status st = FlushVersions();
    if (st.ok()) st = FlushRows();
    if (!st.ok()) Discard();
    return st;
  }

  // Forgets what Put holds back (the transaction or savepoint that wrote it rolls back).
  void Discard() {
    pending_versions_.clear();
    pending_keys_.clear();
    pending_.clear();
  }

  // Writes the index rows of the versions flushed so far, in one statement.
  Status FlushRows() {
    if (pending_.empty()) return Status::Ok();
    std::vector<Row> rows;
    for (const PendingRows& v : pending_) {
      for (const IndexEntry& e : *v.rows) rows.push_back({v.seq, &v.type, &e, &v.patient});
    }
    Status st = InsertRows(rows, /*fresh=*/true);
    pending_.clear();
    return st;
  }

  // A search inside a write that decides a create (SearchQuery::decides_create: a conditional
  // create, or a conditional update that may create). Writes with the same criteria take turns
  // (an advisory lock on a hash of the criteria, held to the end of the transaction), and the
  // search runs after the lock is granted, so under READ COMMITTED it sees what the previous
  // holder committed: two nodes cannot both create "the" patient with identifier X. Criteria
  // written differently (identifier=X and identifier=sys|X) do not share a lock.
  Result<SearchPage> Search(const SearchQuery& q) override {
    RETURN_IF_ERROR(Flush());  // this transaction's own writes are searchable
    if (!q.decides_create) return PgView::Search(q);
    RETURN_IF_ERROR(c_.Query("SELECT pg_advisory_xact_lock($1::bigint)",
                             pg::Params().Int(static_cast<int64_t>(Fnv1a(CriteriaKey(q)))))
                        .status());
    return PgView::Search(q);
  }

  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    RETURN_IF_ERROR(Flush());
    return PgView::ReferringTypes(target_type, target_id, links);
  }
  // Every read sees the transaction's own writes: what Put holds back goes in first.
  Result<std::optional<VersionRecord>> ReadCurrent(const std::string& type,
                                                   const std::string& id) override {
    RETURN_IF_ERROR(Flush());
    return PgView::ReadCurrent(type, id);
  }
  Result<std::optional<VersionRecord>> ReadVersion(const std::string& type, const std::string& id,
                                                   int64_t version) override {
    RETURN_IF_ERROR(Flush());
    return PgView::ReadVersion(type, id, version);
  }
  Result<HistoryPage> History(const HistoryQuery& q) override {
    RETURN_IF_ERROR(Flush());
    return PgView::History(q);
  }
  Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) override {
    RETURN_IF_ERROR(Flush());
    return PgView::FindRequest(request_id);
  }
  Result<std::vector<VersionRecord>> ScanVersions(int64_t after_seq, int64_t limit) override {
    RETURN_IF_ERROR(Flush());
    return PgView::ScanVersions(after_seq, limit);
  }

  Status PutIndexRows(const std::string& type,
                      const std::vector<std::pair<int64_t, IndexEntry>>& rows) override {
    RETURN_IF_ERROR(Flush());
    std::vector<Row> ptrs;
    ptrs.reserve(rows.size());
    for (const auto& [seq, e] : rows) ptrs.push_back({seq, &type, &e, nullptr});
    return InsertRows(ptrs, /*fresh=*/false);
  }

  struct Row {
    int64_t seq;
    const std::string* type;
    const IndexEntry* e;
    const std::string* patient;  // null: looked up by seq
    int64_t tp = -1;             // the (type, param) pair's number (InsertRows fills it in)
  };

  // Every row in one statement: one INSERT ... SELECT FROM unnest(arrays) per kind present.
  // `fresh`: rows of versions this transaction wrote, with their patient keys (duplicates are
  // dropped here, which spares PostgreSQL a uniqueness probe per row); otherwise (reindexing)
  // rows may exist already and each takes its version's patient key by seq.
  Status InsertRows(std::vector<Row> rows, bool fresh) {
    static constexpr IndexKind kKinds[] = {
        IndexKind::kToken,    IndexKind::kString,    IndexKind::kDate, IndexKind::kNumber,
        IndexKind::kQuantity, IndexKind::kReference, IndexKind::kUri,  IndexKind::kText};
    // The number of each row's (type, param) pair (PgIndexKeys); full-text rows keep the names.
    {
      using Pair = std::pair<std::string_view, std::string_view>;
      struct PairHash {
        size_t operator()(const Pair& p) const {
          std::hash<std::string_view> h;
          return h(p.first) * 31 + h(p.second);
        }
      };
      // Each distinct pair once, without building a key string per row.
      std::unordered_map<Pair, size_t, PairHash> seen;  // -> index in pairs
      std::vector<Pair> pairs;
      std::vector<size_t> which(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].e->kind == IndexKind::kText) continue;
        Pair pair{*rows[i].type, rows[i].e->param};
        auto [it, added] = seen.emplace(pair, pairs.size());
        if (added) pairs.push_back(pair);
        which[i] = it->second;
      }
      ASSIGN_OR_RETURN(std::vector<int64_t> numbers, keys_.ForWrite(pairs));
      for (size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].e->kind != IndexKind::kText) rows[i].tp = numbers[which[i]];
      }
    }
    // In key order (the pair's number first): consecutive inserts land on the same B-tree pages
    // (twice as fast as in the order the resources came, measured on 170,000 token rows).
    {
      static const std::string kNone;
      auto tie = [](const Row& r) {
        const IndexEntry& e = *r.e;
        const bool text = e.kind == IndexKind::kText;
        return std::tie(e.kind, r.tp, text ? *r.type : kNone, text ? e.param : kNone, e.value,
                        e.system, e.text, e.start, e.end, e.number, r.seq);
      };
      std::sort(rows.begin(), rows.end(),
                [&](const Row& a, const Row& b) { return tie(a) < tie(b); });
      // The same row twice (two paths to one value) is kept once, as in SQLite.
      if (fresh) {
        rows.erase(std::unique(rows.begin(), rows.end(),
                               [&](const Row& a, const Row& b) { return tie(a) == tie(b); }),
                   rows.end());
      }
    }
    pg::Params p;
    int n = 0;
    auto next = [&] { return "$" + std::to_string(++n); };
    std::string sql = "WITH ";
    int ctes = 0;
    for (IndexKind kind : kKinds) {
      std::vector<std::string_view> types, params, a, b, patients;
      std::vector<int64_t> keys, seqs, i1, i2;
      std::vector<double> d;
      for (const Row& row : rows) {
        const IndexEntry* e = row.e;
        if (e->kind != kind) continue;
        if (kind == IndexKind::kText) {
          types.push_back(*row.type);
          params.push_back(e->param);
        } else {
          keys.push_back(row.tp);
        }
        seqs.push_back(row.seq);
        if (fresh) patients.push_back(*row.patient);
        switch (kind) {
          case IndexKind::kToken:
          case IndexKind::kReference:
            a.push_back(KeyText(e->value));
            b.push_back(KeyText(e->system));
            break;
          case IndexKind::kString:
            a.push_back(KeyText(e->value));
            b.push_back(KeyText(e->text));
            break;
          case IndexKind::kDate:
            i1.push_back(e->start);
            i2.push_back(e->end);
            break;
          case IndexKind::kNumber:
            d.push_back(e->number);
            break;
          case IndexKind::kQuantity:
            a.push_back(KeyText(e->value));
            b.push_back(KeyText(e->system));
            d.push_back(e->number);
            break;
          case IndexKind::kUri:
            a.push_back(KeyText(e->value));
            break;
          case IndexKind::kText:
            a.push_back(e->value);
            break;
        }
      }
      if (seqs.empty()) continue;
      auto text_arr = [&](const std::vector<std::string_view>& v) {
        p.Text(pg::TextArray(v));
        return next() + "::text[]";
      };
      auto int_arr = [&](const std::vector<int64_t>& v) {
        p.Text(pg::IntArray(v));
        return next() + "::bigint[]";
      };
      auto real_arr = [&](const std::vector<double>& v) {
        p.Text(pg::RealArray(v));
        return next() + "::float8[]";
      };
      // Columns: x (the pair's number; for full text t (type) and x (param)), then the kind's
      // values, q (seq), k (patient key).
      std::string cols, names;
      const bool text = kind == IndexKind::kText;
      std::string head = text ? text_arr(types) + ", " + text_arr(params) : int_arr(keys);
      switch (kind) {
        case IndexKind::kToken:
        case IndexKind::kReference:
        case IndexKind::kString:
          cols = kind == IndexKind::kToken       ? "code, system"
                 : kind == IndexKind::kReference ? "target, target_type"
                                                 : "norm, exact";
          head += ", " + text_arr(a) + ", " + text_arr(b);
          names = "y, z";
          break;
        case IndexKind::kDate:
          cols = "start, \"end\"";
          head += ", " + int_arr(i1) + ", " + int_arr(i2);
          names = "y, z";
          break;
        case IndexKind::kNumber:
          cols = "value";
          head += ", " + real_arr(d);
          names = "y";
          break;
        case IndexKind::kQuantity:
          cols = "code, system, value";
          head += ", " + text_arr(a) + ", " + text_arr(b) + ", " + real_arr(d);
          names = "y, z, w";
          break;
        case IndexKind::kUri:
          cols = "uri";
          head += ", " + text_arr(a);
          names = "y";
          break;
        case IndexKind::kText:
          cols = "body";
          head += ", " + text_arr(a);
          names = "y";
          break;
      }
      head += ", " + int_arr(seqs);
      std::string key = "(SELECT v.patient FROM versions v WHERE v.seq=q)";
      if (fresh) {
        head += ", " + text_arr(patients);
        key = "k";
      }
      std::string selected = text ? "to_tsvector('simple', taproot_fold(y))" : names;
      sql += ctes++ ? ", " : "";
      sql += "k" + std::to_string(ctes) + " AS (INSERT INTO " + sql::TableOf(kind) +
             (text ? "(type, param, " : "(tp, ") + cols + ", seq, patient) SELECT " +
             (text ? "t, x, " : "x, ") + selected + ", q, " + key + " FROM unnest(" + head +
             ") AS u(" + (text ? "t, x, " : "x, ") + names + ", q" + (fresh ? ", k" : "") + ")";
      // Reindexing may meet rows that are there already.
      sql += text || fresh ? ")" : " ON CONFLICT DO NOTHING)";
    }
    if (ctes == 0) return Status::Ok();
    sql += " SELECT 1";
    return c_.Prepared(sql, p).status();
  }

  Status Nested(const std::function<Status(WriteTxn&)>& fn) override {
    // Rows held back so far belong to the outer transaction: written before the savepoint.
    RETURN_IF_ERROR(Flush());
    RETURN_IF_ERROR(c_.Exec("SAVEPOINT nested"));
    Status st = fn(*this);
    if (st.ok()) st = Flush();
    if (st.ok()) st = c_.Exec("RELEASE SAVEPOINT nested");
    if (!st.ok()) {
      Discard();  // what the rollback removes
      (void)c_.Exec("ROLLBACK TO SAVEPOINT nested");
      (void)c_.Exec("RELEASE SAVEPOINT nested");
    }
    return st;
  }

  Status RecordRequest(const RequestRecord& r) override {
    return c_
        .Prepared(
            "INSERT INTO requests(request_id, fingerprint, ts, status, headers, body) VALUES "
            "($1, $2, $3::bigint, $4::integer, $5, $6::bytea) ON CONFLICT (request_id) DO UPDATE "
            "SET fingerprint=EXCLUDED.fingerprint, ts=EXCLUDED.ts, status=EXCLUDED.status, "
            "headers=EXCLUDED.headers, body=EXCLUDED.body",
            pg::Params()
                .Text(r.request_id)
                .Text(r.fingerprint)
                .Int(NowMicros())
                .Int(r.status)
                .Text(r.headers_json)
                .Bytes(ZstdCompress(r.body, 1)))
        .status();
  }

 private:
  struct PendingVersion {
    VersionRecord version;  // without its text
    std::string body;       // compressed; empty for a tombstone
    std::string patient;
    IndexRows index;  // null or empty: none
  };
  // A flushed version's index rows, waiting for FlushRows.
  struct PendingRows {
    int64_t seq;
    std::string type;
    IndexRows rows;
    std::string patient;
  };
  // Enough to make each statement worth it, few enough to keep its parameters small.
  static constexpr size_t kMaxPendingVersions = 2000;

  std::vector<PendingVersion> pending_versions_;
  std::unordered_set<std::string> pending_keys_;  // "type/id" of pending_versions_

 public:
  // "type/id" of every version this transaction wrote (nested ones rolled back included: the
  // list serves cache invalidation, where too much is harmless).
  const std::vector<std::string>& written() const { return written_; }

 private:
  std::vector<std::string> written_;
  std::atomic<int64_t>& last_ts_;
  std::vector<PendingRows> pending_;
};

// A pool of connections to one server. Connections are opened on first need (up to `size`),
// and one that lost its server is reconnected when next taken. A connection may come back with
// its read's COMMIT deferred (Conn::DeferCommit): the next user sends it with its own first
// statement, and a sweeper thread sends it for connections left idle longer than
// kMaxDeferMicros, so that no snapshot holds back vacuum (or, on a replica, WAL replay) for
// longer than that.
class Pool {
 public:
  Pool(std::string url, int size) : url_(std::move(url)), size_(size < 1 ? 1 : size) {
    sweeper_ = std::thread([this] { Sweep(); });
  }
  ~Pool() { Close(); }

  // Opens one connection now: the primary fails fast at start when it is unreachable. The
  // others open as load needs them.
  Status Connect() {
    std::lock_guard lock(mu_);
    if (open_count_ > 0) return Status::Ok();
    ASSIGN_OR_RETURN(auto c, pg::Conn::Open(url_));
    idle_.push_back(std::move(c));
    open_count_++;
    return Status::Ok();
  }

  // Runs fn with a connection. While the server stays away, fails with kUnavailable (503).
  // A connection only learns that its server restarted when it next fails: `retry` (for calls
  // that change nothing, or that failed before changing anything) runs fn once more on a
  // reconnected connection, so the first request after a restart does not see the old one.
  Status With(const std::function<Status(pg::Conn&)>& fn, bool retry = false) {
    std::unique_ptr<pg::Conn> c;
    bool open_new = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !idle_.empty() || open_count_ < size_ || closed_; });
      if (closed_) return Status::Unavailable("the store is closed");
      if (!idle_.empty()) {
        c = std::move(idle_.back());
        idle_.pop_back();
      } else {
        open_new = true;
        open_count_++;
      }
      busy_++;
    }
    Status st;
    if (open_new) {
      auto opened = pg::Conn::Open(url_);
      if (opened.ok()) {
        c = std::move(opened).value();
      } else {
        st = opened.status();
      }
    } else if (!c->Healthy()) {
      st = c->Reset();
    }
    if (st.ok()) st = fn(*c);
    if (retry && c && st.code() == StatusCode::kUnavailable && !c->Healthy() && c->Reset().ok()) {
      st = fn(*c);
    }
    if (c && c->Healthy() && !c->Idle()) (void)c->Exec("ROLLBACK");
    {
      std::lock_guard lock(mu_);
      busy_--;
      if (c) {
        idle_.push_back(std::move(c));
      } else {
        open_count_--;  // could not connect: the next caller tries again
      }
    }
    cv_.notify_all();
    return st;
  }

  // Refuses new work, waits for the calls in progress, and disconnects.
  void Close() {
    std::unique_lock lock(mu_);
    closed_ = true;
    cv_.notify_all();
    sweep_cv_.notify_all();
    cv_.wait(lock, [&] { return busy_ == 0; });
    idle_.clear();
    open_count_ = 0;
    lock.unlock();
    if (sweeper_.joinable()) sweeper_.join();
  }

 private:
  static constexpr int64_t kMaxDeferMicros = 50000;

  void Sweep() {
    std::unique_lock lock(mu_);
    while (!closed_) {
      sweep_cv_.wait_for(lock, std::chrono::microseconds(kMaxDeferMicros / 2));
      if (closed_) break;
      const int64_t now = NowMicros();
      std::vector<std::unique_ptr<pg::Conn>> stale;
      for (auto it = idle_.begin(); it != idle_.end();) {
        int64_t since = (*it)->DeferredSince();
        if (since && now - since >= kMaxDeferMicros) {
          stale.push_back(std::move(*it));
          it = idle_.erase(it);
        } else {
          ++it;
        }
      }
      if (stale.empty()) continue;
      busy_ += static_cast<int>(stale.size());
      lock.unlock();
      for (auto& c : stale) {
        // A failure leaves the connection unhealthy: it is reset when next taken.
        if (c->FlushDeferred().ok() && !c->Idle()) (void)c->Exec("ROLLBACK");
      }
      lock.lock();
      busy_ -= static_cast<int>(stale.size());
      // Oldest first: the pool hands out the most recently used connection.
      idle_.insert(idle_.begin(), std::make_move_iterator(stale.begin()),
                   std::make_move_iterator(stale.end()));
      cv_.notify_all();
    }
  }

  const std::string url_;
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable sweep_cv_;  // wakes the sweeper early to stop
  std::vector<std::unique_ptr<pg::Conn>> idle_;
  int open_count_ = 0, busy_ = 0;
  bool closed_ = false;
  std::thread sweeper_;  // last: started once the members it uses exist
};

// A streaming replica: its pool, and the newest WAL position it was seen to have replayed.
struct Replica {
  Replica(std::string url, int size) : pool(std::move(url), size) {}
  Pool pool;
  std::atomic<uint64_t> replayed{0};
};

// What a node may keep of the current versions it read (see PostgresStore's cache comment).
struct CacheState {
  std::unique_ptr<CurrentCache> cache;
  std::atomic<bool> on{false};        // the listener is connected and listening
  std::atomic<int64_t> in_flight{0};  // this node's commits in progress
  std::atomic<uint64_t> epoch{0};     // bumped by every invalidation

  void Invalidate(const std::string& key) {
    size_t slash = key.find('/');
    if (slash != std::string::npos) cache->Invalidate(key.substr(0, slash), key.substr(slash + 1));
  }
};

// A single-statement read through the cache: a read by id is answered from it when it can be,
// and every other statement (and every miss) goes to the database as usual.
class CachedStatementView : public ReadView {
 public:
  using Route = std::function<Status(const std::function<Status(ReadView&)>&)>;
  CachedStatementView(CacheState& state, Route route) : s_(state), route_(std::move(route)) {}

  Result<std::optional<VersionRecord>> ReadCurrent(const std::string& type,
                                                   const std::string& id) override {
    if (s_.on.load()) {
      if (auto hit = s_.cache->Get(type, id)) {
        VersionRecord v = hit->meta;
        if (!v.deleted) {
          ASSIGN_OR_RETURN(v.json, ZstdDecompress(hit->compressed_body));
        }
        return std::optional<VersionRecord>(std::move(v));
      }
    }
    // A fill is kept only if no commit of this node was in flight and nothing was invalidated
    // from before the query to after it: then what the query read is still current. The test
    // runs under the cache's lock (FillIf): tested before it, a whole commit could slip in
    // between the test and the fill and leave the old version cached.
    bool quiet = s_.in_flight.load() == 0;
    uint64_t epoch = s_.epoch.load();
    ASSIGN_OR_RETURN(std::optional<VersionRecord> out,
                     Direct([&](ReadView& v) { return v.ReadCurrent(type, id); }));
    if (out && quiet && s_.on.load()) {
      CurrentCache::Entry e;
      e.meta = *out;
      e.meta.json.clear();
      if (!out->deleted) e.compressed_body = ZstdCompress(out->json, 1);
      s_.cache->FillIf(std::move(e), [&] {
        return s_.on.load() && s_.in_flight.load() == 0 && s_.epoch.load() == epoch;
      });
    }
    return out;
  }
  Result<std::optional<VersionRecord>> ReadVersion(const std::string& type, const std::string& id,
                                                   int64_t version) override {
    return Direct([&](ReadView& v) { return v.ReadVersion(type, id, version); });
  }
  Result<SearchPage> Search(const SearchQuery& q) override {
    return Direct([&](ReadView& v) { return v.Search(q); });
  }
  Result<std::vector<SearchPage>> SearchBatch(const std::vector<SearchQuery>& queries) override {
    return Direct([&](ReadView& v) { return v.SearchBatch(queries); });
  }
  Result<HistoryPage> History(const HistoryQuery& q) override {
    return Direct([&](ReadView& v) { return v.History(q); });
  }
  Result<std::optional<RequestRecord>> FindRequest(const std::string& request_id) override {
    return Direct([&](ReadView& v) { return v.FindRequest(request_id); });
  }
  Result<std::vector<VersionRecord>> ScanVersions(int64_t after_seq, int64_t limit) override {
    return Direct([&](ReadView& v) { return v.ScanVersions(after_seq, limit); });
  }
  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    return Direct([&](ReadView& v) { return v.ReferringTypes(target_type, target_id, links); });
  }

 private:
  // One statement on a database view (the cache plays no part).
  template <typename Fn>
  auto Direct(Fn fn) -> decltype(fn(std::declval<ReadView&>())) {
    using R = decltype(fn(std::declval<ReadView&>()));
    R out = Status::Internal("not run");
    RETURN_IF_ERROR(route_([&](ReadView& v) -> Status {
      out = fn(v);
      return out.status();
    }));
    return out;
  }

  CacheState& s_;
  Route route_;
};

class PostgresStore : public Store {
 public:
  explicit PostgresStore(PostgresOptions options)
      : options_(std::move(options)),
        primary_(options_.url, options_.connections),
        keys_(options_.url) {
    for (const std::string& url : options_.replicas) {
      replicas_.push_back(std::make_unique<Replica>(url, options_.connections));
    }
  }
  ~PostgresStore() override { Close(); }

  Status Open() {
    RETURN_IF_ERROR(primary_.Connect());
    RETURN_IF_ERROR(primary_.With([&](pg::Conn& c) -> Status {
      RETURN_IF_ERROR(Migrate(c));
      ASSIGN_OR_RETURN(pg::Rows r, c.Query("SELECT coalesce((SELECT max(ts) FROM versions), 0), "
                                           "NOT EXISTS (SELECT 1 FROM current)"));
      last_ts_ = r.Int(0, 0);
      was_empty_ = r.Int(0, 1) != 0;
      return Status::Ok();
    }));
    open_ = true;
    if (options_.cache_mb > 0 && replicas_.empty()) {
      cache_.cache = std::make_unique<CurrentCache>(options_.cache_mb * 1024 * 1024);
      listener_ = std::thread([this] { Listen(); });
    }
    return Status::Ok();
  }

  Status Read(const std::function<Status(ReadView&)>& fn) override {
    return Route([&](pg::Conn& c) { return Snapshot(c, fn); });
  }

  Status ReadStatement(const std::function<Status(ReadView&)>& fn) override {
    auto direct = [&](const std::function<Status(ReadView&)>& inner) {
      return Route([&](pg::Conn& c) -> Status {
        PgView view(c, keys_);
        return inner(view);
      });
    };
    if (!cache_.cache) return direct(fn);
    if (!open_) return Status::Unavailable("the store is closed");
    CachedStatementView view(cache_, direct);
    return fn(view);
  }

  Status ReadPrimary(const std::function<Status(ReadView&)>& fn) override {
    return primary_.With([&](pg::Conn& c) { return Snapshot(c, fn); }, /*retry=*/true);
  }

  Status Write(const std::function<Status(WriteTxn&)>& fn) override {
    Status st = primary_.With([&](pg::Conn& c) -> Status {
      Status begun = c.Exec("BEGIN");
      if (!begun.ok() && !c.Healthy()) {
        // The server restarted since this connection last worked; nothing was sent yet.
        RETURN_IF_ERROR(c.Reset());
        begun = c.Exec("BEGIN");
      }
      RETURN_IF_ERROR(begun);
      PgWriteTxn txn(c, keys_, last_ts_);
      Status st = fn(txn);
      if (st.ok()) st = txn.Flush();
      // A statement that failed unnoticed would make COMMIT roll back without an error.
      if (st.ok() && c.InFailedTransaction()) {
        st = Status::Internal("a statement of the transaction failed");
      }
      if (!st.ok()) {
        (void)c.Exec("ROLLBACK");
        return st;
      }
      // The cache: every node (this one included, through its listener) drops what this
      // transaction wrote when it commits (NOTIFY is delivered at COMMIT); this node also drops
      // it here, around the COMMIT, and refuses fills while the commit is in flight.
      struct InFlight {
        CacheState* s;
        ~InFlight() {
          if (s) {
            s->epoch++;
            s->in_flight--;
          }
        }
      } in_flight{cache_.cache ? &cache_ : nullptr};
      if (cache_.cache && !txn.written().empty()) {
        cache_.in_flight++;
        cache_.epoch++;
        std::string payload;
        for (const std::string& k : txn.written()) {
          cache_.Invalidate(k);
          if (payload.size() + k.size() + 1 > 7000) {
            payload = "*";  // NOTIFY payloads stop at 8000 bytes: everyone drops everything
            break;
          }
          if (!payload.empty()) payload += '\n';
          payload += k;
        }
        // The NOTIFY and the COMMIT in one round trip. Durable when the COMMIT's answer comes
        // (synchronous_commit, PostgreSQL's default). If the NOTIFY fails, the server skips the
        // COMMIT, and the pool rolls back what is left open.
        static const std::string kNotify = "SELECT pg_notify('taproot_current', $1)";
        pg::Params notify;
        notify.Text(payload);
        RETURN_IF_ERROR(c.Pipeline({}, {{kNotify, notify}}, {"COMMIT"}).status());
      } else {
        in_flight.s = nullptr;
        // Durable when COMMIT returns (synchronous_commit, PostgreSQL's default).
        RETURN_IF_ERROR(c.Exec("COMMIT"));
      }
      if (in_flight.s) {
        for (const std::string& k : txn.written()) cache_.Invalidate(k);
      }
      if (!replicas_.empty()) {
        // Where WAL is being inserted now, past this commit's record (the write position can
        // lag it when commits are asynchronous): reads on this node go to a replica only once
        // it has replayed this far, so a client reads its own writes.
        auto lsn = c.Query("SELECT pg_current_wal_insert_lsn()");
        if (lsn.ok()) {
          uint64_t at = static_cast<uint64_t>(lsn->Int(0, 0));
          uint64_t seen = written_lsn_.load();
          while (seen < at && !written_lsn_.compare_exchange_weak(seen, at)) {
          }
        }
      }
      return Status::Ok();
    });
    if (st.ok()) {
      write_calls_++;
      commits_++;
      if (write_calls_ % 1000 == 0) PruneRequests();
    }
    return st;
  }

  Result<StoreStats> Stats() override {
    StoreStats stats;
    stats.write_calls = write_calls_;
    stats.commits = commits_;
    RETURN_IF_ERROR(primary_.With([&](pg::Conn& c) -> Status {
      ASSIGN_OR_RETURN(pg::Rows r, c.Query("SELECT (SELECT count(*) FROM current WHERE "
                                           "deleted=0), (SELECT count(*) FROM versions)"));
      stats.resources = r.Int(0, 0);
      stats.versions = r.Int(0, 1);
      return Status::Ok();
    }));
    return stats;
  }

  Status Ready() override {
    if (!open_) return Status::Unavailable("the store is closed");
    return primary_.With([](pg::Conn& c) { return c.Exec("SELECT 1"); }, /*retry=*/true);
  }

  // VACUUM as well as ANALYZE: after a bulk load no page is marked all-visible yet, so every
  // index-only scan (the search compiler's drivers and probes) would still visit the table
  // until autovacuum came by. On freshly inserted tables it is quick (0.2 s for 57,802
  // resources), and searches were 22-32 % faster after it.
  Status RefreshStatistics() override {
    return primary_.With([](pg::Conn& c) { return c.Exec("VACUUM (ANALYZE)"); });
  }

  bool IsOpen() const override { return open_; }
  bool WasEmptyAtOpen() const override { return was_empty_; }

  void Close() override {
    open_ = false;
    stop_listener_ = true;
    if (listener_.joinable()) listener_.join();
    primary_.Close();
    for (auto& r : replicas_) r->pool.Close();
  }

 private:
  Status Snapshot(pg::Conn& c, const std::function<Status(ReadView&)>& fn) {
    PgView view(c, keys_, /*snapshot=*/true);
    Status st = fn(view);
    if (!view.started()) return st;
    if (st.ok()) {
      c.DeferCommit();  // read only: its COMMIT rides on the connection's next round trip
      return st;
    }
    (void)c.Exec("ROLLBACK");
    return st;
  }

  // A read goes to a replica (in turn) that has replayed every write this node made; its
  // replay position is asked again only when this node wrote since it was last seen. A replica
  // that is behind, or away, leaves the read to the primary.
  Status Route(const std::function<Status(pg::Conn&)>& fn) {
    if (!open_) return Status::Unavailable("the store is closed");
    size_t n = replicas_.size();
    uint64_t need = written_lsn_.load();
    for (size_t k = 0; k < n; ++k) {
      Replica& r = *replicas_[(next_replica_++ + k) % n];
      bool served = false;
      Status st = r.pool.With(
          [&](pg::Conn& c) -> Status {
            if (r.replayed.load() < need) {
              ASSIGN_OR_RETURN(pg::Rows lsn, c.Query("SELECT pg_last_wal_replay_lsn()"));
              if (lsn.rows() != 1 || lsn.IsNull(0, 0)) {
                return Status::Unavailable("not a streaming replica");
              }
              uint64_t at = static_cast<uint64_t>(lsn.Int(0, 0));
              uint64_t seen = r.replayed.load();
              while (seen < at && !r.replayed.compare_exchange_weak(seen, at)) {
              }
              if (at < need) return Status::Ok();  // behind: the primary serves this read
            }
            served = true;
            return fn(c);
          },
          /*retry=*/true);
      if (served && st.code() != StatusCode::kUnavailable) return st;
    }
    return primary_.With(fn, /*retry=*/true);
  }

  Status Migrate(pg::Conn& c) {
    RETURN_IF_ERROR(c.Exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLock) + ")"));
    Status st = ApplyMigrations(c);
    (void)c.Exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLock) + ")");
    return st;
  }

  Status ApplyMigrations(pg::Conn& c) {
    RETURN_IF_ERROR(
        c.Exec("CREATE TABLE IF NOT EXISTS taproot_migrations(version integer PRIMARY KEY, "
               "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"));
    ASSIGN_OR_RETURN(pg::Rows r, c.Query("SELECT coalesce(max(version), 0) FROM "
                                         "taproot_migrations"));
    int64_t at = r.Int(0, 0);
    const int latest = std::end(kMigrations)[-1].version;
    const int target = options_.schema_version > 0 ? options_.schema_version : latest;
    if (at > latest) {
      return Status::Unavailable("the database's schema (migration " + std::to_string(at) +
                                 ") is newer than this build knows (" + std::to_string(latest) +
                                 "): upgrade taproot");
    }
    for (const Migration& m : kMigrations) {
      if (m.version <= at || m.version > target) continue;
      RETURN_IF_ERROR(c.Exec("BEGIN"));
      Status st = c.Exec(m.sql);
      if (st.ok()) {
        auto ins =
            c.Query("INSERT INTO taproot_migrations(version, description) VALUES ($1::integer, $2)",
                    pg::Params().Int(m.version).Text(m.description));
        st = ins.status();
      }
      if (st.ok()) st = c.Exec("COMMIT");
      if (!st.ok()) {
        (void)c.Exec("ROLLBACK");
        return Status::Unavailable("schema migration " + std::to_string(m.version) +
                                   " failed: " + st.message());
      }
    }
    return Status::Ok();
  }

  // The cache's listener: LISTEN on a connection of its own and drop what other nodes (and
  // this one) commit. While it is not listening, the cache is off and empty: a node that may
  // have missed a notification serves nothing from it.
  void Listen() {
    std::unique_ptr<pg::Conn> conn;
    while (!stop_listener_) {
      if (!conn) {
        auto opened = pg::Conn::Open(options_.url);
        if (opened.ok() && (*opened)->Exec("LISTEN taproot_current").ok()) {
          conn = std::move(opened).value();
          cache_.cache->Clear();
          cache_.epoch++;
          cache_.on = true;
        } else {
          for (int i = 0; i < 10 && !stop_listener_; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          continue;
        }
      }
      auto payloads = conn->WaitForNotifications(100);
      if (!payloads.ok()) {
        LogWarn("cache listener lost its connection; the cache is off until it is back: " +
                payloads.status().message());
        cache_.on = false;
        cache_.cache->Clear();
        conn.reset();
        continue;
      }
      for (const std::string& p : *payloads) {
        cache_.epoch++;
        if (p == "*") {
          cache_.cache->Clear();
          continue;
        }
        size_t start = 0;
        while (start < p.size()) {
          size_t nl = p.find('\n', start);
          if (nl == std::string::npos) nl = p.size();
          cache_.Invalidate(p.substr(start, nl - start));
          start = nl + 1;
        }
      }
    }
    cache_.on = false;
  }

  void PruneRequests() {
    (void)primary_.With([&](pg::Conn& c) -> Status {
      return c
          .Query("DELETE FROM requests WHERE ts < $1::bigint",
                 pg::Params().Int(NowMicros() - options_.request_log_ttl_seconds * 1000000))
          .status();
    });
  }

  PostgresOptions options_;
  Pool primary_;
  PgIndexKeys keys_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::atomic<size_t> next_replica_{0};
  std::atomic<uint64_t> written_lsn_{0};  // the WAL position after this node's latest write
  std::atomic<int64_t> last_ts_{0};
  std::atomic<int64_t> write_calls_{0}, commits_{0};
  bool was_empty_ = false;
  std::atomic<bool> open_{false};
  // A cache of current versions for reads by id, as the embedded store has. Each commit
  // NOTIFYs the resources it wrote; every node LISTENs and drops them. A write by another node
  // shows on this one once its notification arrives (milliseconds: the promise replicas make);
  // this node's own writes show at once; `Cache-Control: no-cache` reads the primary. Off when
  // replicas are configured (a lagging replica could refill what was just dropped).
  CacheState cache_;
  std::thread listener_;
  std::atomic<bool> stop_listener_{false};
};

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  auto store = std::make_unique<PostgresStore>(options);
  RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace taproot::store
