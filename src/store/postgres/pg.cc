#include "store/postgres/pg.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>

#include "common/clock.h"

namespace taproot::store::pg {

Params& Params::Text(std::string v) {
  values_.push_back({std::move(v), false, false});
  return *this;
}
Params& Params::Int(int64_t v) { return Text(std::to_string(v)); }
Params& Params::Real(double v) {
  if (std::isnan(v)) return Text("NaN");
  if (std::isinf(v)) return Text(v > 0 ? "Infinity" : "-Infinity");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return Text(buf);
}
Params& Params::Bytes(std::string v) {
  values_.push_back({std::move(v), true, false});
  return *this;
}
Params& Params::Null() {
  values_.push_back({{}, false, true});
  return *this;
}

Rows::~Rows() {
  if (r_) PQclear(r_);
}
Rows& Rows::operator=(Rows&& o) noexcept {
  std::swap(r_, o.r_);
  return *this;
}
int Rows::rows() const { return r_ ? PQntuples(r_) : 0; }
bool Rows::IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
int64_t Rows::Int(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col));
  int len = PQgetlength(r_, row, col);
  uint64_t v = 0;
  for (int i = 0; i < len; ++i) v = (v << 8) | p[i];
  if (len > 0 && len < 8 && (p[0] & 0x80)) v |= ~uint64_t{0} << (8 * len);  // sign-extend
  return static_cast<int64_t>(v);
}
std::string_view Rows::Bytes(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return {};
  return std::string_view(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
}

namespace {

void IgnoreNotice(void*, const PGresult*) {}

// Every session: UTC, and prepared statements planned once. Taproot's statements fix their
// plans by their shape (a driving index range, then a lookup per candidate), so a generic plan
// loses nothing, while planning them again for every execution (PostgreSQL's default when a
// generic plan's estimate looks worse) cost more than running them.
constexpr const char* kSessionSetup =
    "SET TIME ZONE 'UTC'; SET plan_cache_mode = force_generic_plan";

// SQLSTATE classes the callers act on: a conflicting concurrent transaction (retry), a
// duplicate key, and the database being away (503 until it returns).
Status FromResult(PGconn* c, PGresult* r, std::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg = std::string(what) + ": " + (r ? PQresultErrorMessage(r) : PQerrorMessage(c));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  std::string_view s = state ? state : "";
  if (s == "40001" || s == "40P01") {
    return Status::Make(StatusCode::kAborted, "a concurrent write conflicted; retry (" + msg + ")");
  }
  if (s == "23505") return Status::Conflict(msg);
  if (PQstatus(c) != CONNECTION_OK || s.substr(0, 2) == "08" || s.substr(0, 2) == "53" ||
      s == "57P01" || s == "57P02" || s == "57P03" || s == "25006" || s.empty()) {
    return Status::Unavailable("the database is unavailable: " + msg);
  }
  return Status::Internal(msg);
}

}  // namespace

Conn::~Conn() {
  if (c_) PQfinish(c_);
}

Result<std::unique_ptr<Conn>> Conn::Open(const std::string& url) {
  auto conn = std::make_unique<Conn>();
  // A database host that does not answer must not hang requests: give up connecting after a
  // few seconds unless the URL says otherwise.
  const char* keys[] = {"dbname", "connect_timeout", nullptr};
  const char* values[] = {url.c_str(), "5", nullptr};
  if (url.find("connect_timeout") != std::string::npos) keys[1] = values[1] = nullptr;
  conn->c_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (PQstatus(conn->c_) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn->c_);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::Unavailable("cannot connect to PostgreSQL: " + msg);
  }
  PQsetNoticeReceiver(conn->c_, IgnoreNotice, nullptr);
  RETURN_IF_ERROR(conn->Exec(kSessionSetup));
  return conn;
}

Status Conn::Check(PGresult* r, std::string_view what) {
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::Ok();
  return FromResult(c_, r, what);
}

Status Conn::Exec(const std::string& sql) {
  // A simple query may hold several statements: a deferred COMMIT rides in front.
  PGresult* r = PQexec(c_, deferred_since_ ? ("COMMIT; " + sql).c_str() : sql.c_str());
  deferred_since_ = 0;
  Rows owned(r);
  return Check(r, "PostgreSQL");
}

// The parameter arrays libpq takes, pointing into `params`.
struct Conn::Bound {
  explicit Bound(const Params& params) {
    for (const auto& v : params.values_) {
      values.push_back(v.null ? nullptr : v.data.c_str());
      lengths.push_back(static_cast<int>(v.data.size()));
      formats.push_back(v.binary ? 1 : 0);
    }
  }
  int n() const { return static_cast<int>(values.size()); }
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
};

Result<Rows> Conn::Query(const std::string& sql, const Params& params) {
  if (deferred_since_) RETURN_IF_ERROR(FlushDeferred());  // rare: Explain, replica positions
  Bound b(params);
  PGresult* r = PQexecParams(c_, sql.c_str(), b.n(), nullptr, b.values.data(), b.lengths.data(),
                             b.formats.data(), 1);
  Rows rows(r);
  RETURN_IF_ERROR(Check(r, "PostgreSQL"));
  return rows;
}

Result<std::pair<std::string, bool>> Conn::StatementName(const std::string& sql) {
  auto it = prepared_.find(sql);
  if (it != prepared_.end()) return std::make_pair(it->second, false);
  if (prepared_.size() >= kMaxPrepared) {
    // Searches prepare a statement per query shape: keep the server's memory bounded.
    RETURN_IF_ERROR(Exec("DEALLOCATE ALL"));
    prepared_.clear();
  }
  return std::make_pair("s" + std::to_string(next_name_++), true);
}

Result<Rows> Conn::Prepared(const std::string& sql, const Params& params) {
  if (deferred_since_) {
    ASSIGN_OR_RETURN(std::vector<Rows> rows, Pipeline({}, {{sql, params}}));
    return std::move(rows.back());
  }
  ASSIGN_OR_RETURN(auto named, StatementName(sql));
  const std::string& name = named.first;
  if (named.second) {
    PGresult* prep = PQprepare(c_, name.c_str(), sql.c_str(), 0, nullptr);
    Rows owned(prep);
    RETURN_IF_ERROR(Check(prep, "PostgreSQL prepare"));
    prepared_.emplace(sql, name);
  }
  Bound b(params);
  PGresult* r = PQexecPrepared(c_, name.c_str(), b.n(), b.values.data(), b.lengths.data(),
                               b.formats.data(), 1);
  Rows rows(r);
  RETURN_IF_ERROR(Check(r, "PostgreSQL"));
  return rows;
}

Result<std::vector<Rows>> Conn::Pipeline(const std::vector<std::string>& first,
                                         const std::vector<Statement>& statements,
                                         const std::vector<std::string>& last) {
  // Each statement's name, and whether this pipeline prepares it (once for two of one SQL).
  std::vector<std::pair<std::string, bool>> names;
  std::unordered_map<std::string_view, size_t> fresh;  // SQL -> its first place in `names`
  for (const Statement& s : statements) {
    if (auto it = prepared_.find(s.sql); it != prepared_.end()) {
      names.emplace_back(it->second, false);
    } else if (auto f = fresh.find(s.sql); f != fresh.end()) {
      names.emplace_back(names[f->second].first, false);
    } else if (prepared_.size() + fresh.size() >= kMaxPrepared && !prepared_.empty()) {
      // Searches prepare a statement per query shape: keep the server's memory bounded.
      RETURN_IF_ERROR(Exec("DEALLOCATE ALL"));
      prepared_.clear();
      return Pipeline(first, statements, last);
    } else {
      fresh.emplace(s.sql, names.size());
      names.emplace_back("s" + std::to_string(next_name_++), true);
    }
  }
  std::vector<std::string> simple;
  if (deferred_since_) simple.push_back("COMMIT");
  simple.insert(simple.end(), first.begin(), first.end());
  deferred_since_ = 0;

  if (PQenterPipelineMode(c_) != 1) return FromResult(c_, nullptr, "PostgreSQL pipeline");
  bool sent = true;
  for (const std::string& sql : simple) {
    sent =
        sent && PQsendQueryParams(c_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) == 1;
  }
  // Each result's place: -1 for what is only checked, else the statement's index.
  std::vector<int> places(simple.size(), -1);
  std::vector<Bound> bound;
  bound.reserve(statements.size());
  for (size_t i = 0; i < statements.size() && sent; ++i) {
    if (names[i].second) {
      sent = PQsendPrepare(c_, names[i].first.c_str(), statements[i].sql.c_str(), 0, nullptr) == 1;
      places.push_back(-1);
    }
    const Bound& b = bound.emplace_back(statements[i].params);
    sent = sent && PQsendQueryPrepared(c_, names[i].first.c_str(), b.n(), b.values.data(),
                                       b.lengths.data(), b.formats.data(), 1) == 1;
    places.push_back(static_cast<int>(i));
  }
  for (const std::string& sql : last) {
    sent =
        sent && PQsendQueryParams(c_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) == 1;
    places.push_back(-1);
  }
  sent = sent && PQpipelineSync(c_) == 1;
  Status st;
  std::vector<Rows> out(statements.size());
  if (sent) {
    // Each statement's results end with a null; the sync's own result comes last. After a
    // failed statement the server skips the rest (PGRES_PIPELINE_ABORTED) up to the sync.
    for (int place : places) {
      while (PGresult* r = PQgetResult(c_)) {
        Rows owned(r);
        if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) continue;
        Status checked = Check(r, "PostgreSQL");
        if (!checked.ok() && st.ok()) st = checked;
        if (checked.ok() && place >= 0) out[static_cast<size_t>(place)] = std::move(owned);
      }
    }
    Rows sync(PQgetResult(c_));
  } else {
    st = FromResult(c_, nullptr, "PostgreSQL");
  }
  if (PQexitPipelineMode(c_) != 1) broken_ = true;
  RETURN_IF_ERROR(st);
  if (broken_) return Status::Unavailable("the database connection was left mid-pipeline");
  for (size_t i = 0; i < statements.size(); ++i) {
    if (names[i].second) prepared_.emplace(statements[i].sql, names[i].first);
  }
  return out;
}

void Conn::DeferCommit() { deferred_since_ = std::max<int64_t>(NowMicros(), 1); }

Status Conn::FlushDeferred() {
  if (!deferred_since_) return Status::Ok();
  deferred_since_ = 0;
  return Exec("COMMIT");
}

bool Conn::Healthy() const { return !broken_ && PQstatus(c_) == CONNECTION_OK; }

Result<std::vector<std::string>> Conn::WaitForNotifications(int timeout_ms) {
  int fd = PQsocket(c_);
  if (fd < 0 || !Healthy()) return Status::Unavailable("the listening connection is closed");
  pollfd p{fd, POLLIN, 0};
  int ready = poll(&p, 1, timeout_ms);
  if (ready < 0 && errno != EINTR) return Status::Unavailable("poll failed on the connection");
  if (ready > 0 && PQconsumeInput(c_) != 1) {
    return Status::Unavailable(std::string("the listening connection failed: ") +
                               PQerrorMessage(c_));
  }
  std::vector<std::string> out;
  while (PGnotify* n = PQnotifies(c_)) {
    out.emplace_back(n->extra ? n->extra : "");
    PQfreemem(n);
  }
  if (!Healthy()) return Status::Unavailable("the listening connection is closed");
  return out;
}

Status Conn::Reset() {
  broken_ = false;
  deferred_since_ = 0;  // the session, and its transaction, are gone
  PQreset(c_);
  prepared_.clear();  // a new session has none of them
  if (PQstatus(c_) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c_);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::Unavailable("the database is unavailable: " + msg);
  }
  PQsetNoticeReceiver(c_, IgnoreNotice, nullptr);
  return Exec(kSessionSetup);
}

bool Conn::Idle() const {
  PGTransactionStatusType t = PQtransactionStatus(c_);
  return t == PQTRANS_IDLE || (deferred_since_ && t == PQTRANS_INTRANS);
}
bool Conn::InFailedTransaction() const { return PQtransactionStatus(c_) == PQTRANS_INERROR; }

std::string TextArray(const std::vector<std::string_view>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char ch : values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  return out + "}";
}

std::string IntArray(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  return out + "}";
}

std::string RealArray(const std::vector<double>& values) {
  std::string out = "{";
  char buf[32];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    double v = values[i];
    if (std::isnan(v)) {
      out += "NaN";
    } else if (std::isinf(v)) {
      out += v > 0 ? "Infinity" : "-Infinity";
    } else {
      std::snprintf(buf, sizeof buf, "%.17g", v);
      out += buf;
    }
  }
  return out + "}";
}

}  // namespace taproot::store::pg
