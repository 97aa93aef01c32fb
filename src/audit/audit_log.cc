#include "audit/audit_log.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace taproot::audit {
namespace {

constexpr const char* kZero = "0000000000000000000000000000000000000000000000000000000000000000";

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

class Db {
 public:
  ~Db() {
    for (auto& [sql, st] : cache_) sqlite3_finalize(st);
    if (db_) sqlite3_close(db_);
  }
  Status Open(const std::string& path, bool readonly) {
    int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
      return Status::Unavailable("cannot open the audit log " + path + ": " + Error());
    }
    sqlite3_busy_timeout(db_, 5000);
    return Status::Ok();
  }
  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Status::Internal("audit log: " + msg);
    }
    return Status::Ok();
  }
  Result<sqlite3_stmt*> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Status::Internal("audit log: " + Error());
    }
    cache_[sql] = st;
    return st;
  }
  std::string Error() const { return db_ ? sqlite3_errmsg(db_) : "no database"; }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> cache_;
};

std::string Text(sqlite3_stmt* st, int col) {
  const unsigned char* p = sqlite3_column_text(st, col);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(st, col)))
           : std::string();
}

// The stored text with its id spliced in after "resourceType".
constexpr const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS audit(
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  user TEXT NOT NULL,
  patients TEXT NOT NULL,   -- ' a b c ': each id between spaces
  subtype TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  alert INTEGER NOT NULL,
  acknowledges INTEGER,
  body TEXT NOT NULL,
  prev TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE INDEX IF NOT EXISTS audit_user ON audit(user, seq);
CREATE INDEX IF NOT EXISTS audit_ack ON audit(acknowledges) WHERE acknowledges IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_alert ON audit(seq) WHERE alert = 1;
)";

std::string DbPath(const std::string& dir) { return dir + "/audit.db"; }
std::string HeadPath(const std::string& dir) { return dir + "/audit.head"; }

}  // namespace

std::string ChainHash(const std::string& prev_hex, int64_t seq, std::string_view text) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  std::string seq_text = "|" + std::to_string(seq) + "|";
  unsigned char out[32];
  unsigned int len = 0;
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  EVP_DigestUpdate(md, prev_hex.data(), prev_hex.size());
  EVP_DigestUpdate(md, seq_text.data(), seq_text.size());
  EVP_DigestUpdate(md, text.data(), text.size());
  EVP_DigestFinal_ex(md, out, &len);
  EVP_MD_CTX_free(md);
  return Hex(out, len);
}

class AuditLog::Impl {
 public:
  Impl(std::string dir, bool sync) : dir_(std::move(dir)), sync_(sync) {}

  Status Start() {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    // One process per log: a second writer would fork the chain. (Nodes that share a database
    // each keep their own log, in their own directory.)
    lock_fd_ = open((dir_ + "/audit.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0 || flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status::Unavailable("another taproot process keeps its audit log in " + dir_ +
                                 "; give each node its own --data directory");
    }
    RETURN_IF_ERROR(writer_db_.Open(DbPath(dir_), false));
    RETURN_IF_ERROR(writer_db_.Exec(std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                                    (sync_ ? "FULL" : "OFF") + ";"));
    RETURN_IF_ERROR(writer_db_.Exec(kSchema));
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     writer_db_.Prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
    if (sqlite3_step(st) == SQLITE_ROW) {
      last_seq_ = sqlite3_column_int64(st, 0);
      last_hash_ = Text(st, 1);
    }
    sqlite3_reset(st);
    RETURN_IF_ERROR(reader_db_.Open(DbPath(dir_), true));
    return Status::Ok();
  }

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable()) writer_.join();  // commits what is queued first
    if (last_seq_ > 0) WriteAnchor();
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
  }

  void StartWriter() {
    writer_ = std::thread([this] { Loop(); });
  }

  void AppendAsync(AuditEntry entry, AuditLog::Done done) {
    {
      std::lock_guard lock(mu_);
      if (!closed_) {
        queue_.push_back(Pending{std::move(entry), std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    done(Status::Unavailable("the audit log is closed"), 0);
  }

  Result<AuditPage> Search(const AuditQuery& q) {
    std::string sql =
        "SELECT seq, body, alert, EXISTS(SELECT 1 FROM audit k WHERE k.acknowledges = a.seq) "
        "FROM audit a WHERE 1=1";
    std::vector<std::string> texts;
    auto bind_text = [&](const std::string& clause, const std::string& v) {
      sql += clause;
      texts.push_back(v);
    };
    if (q.id) sql += " AND seq = " + std::to_string(*q.id);
    if (!q.user.empty()) bind_text(" AND user = ?", q.user);
    if (!q.patient.empty()) bind_text(" AND instr(patients, ?) > 0", " " + q.patient + " ");
    if (!q.subtype.empty()) bind_text(" AND subtype = ?", q.subtype);
    if (!q.action.empty()) bind_text(" AND action = ?", q.action);
    if (!q.outcome.empty()) bind_text(" AND outcome = ?", q.outcome);
    if (q.from_us) sql += " AND ts >= " + std::to_string(*q.from_us);
    if (q.to_us) sql += " AND ts < " + std::to_string(*q.to_us);
    if (q.open_alerts_only) {
      sql += " AND alert = 1 AND NOT EXISTS(SELECT 1 FROM audit k WHERE k.acknowledges = a.seq)";
    }
    if (q.before_seq) sql += " AND seq < " + std::to_string(*q.before_seq);
    sql += " ORDER BY seq DESC LIMIT " + std::to_string(q.count + 1);
    std::lock_guard lock(read_mu_);
    ASSIGN_OR_RETURN(sqlite3_stmt * st, reader_db_.Prepare(sql));
    for (size_t i = 0; i < texts.size(); ++i) {
      sqlite3_bind_text(st, static_cast<int>(i + 1), texts[i].data(),
                        static_cast<int>(texts[i].size()), SQLITE_TRANSIENT);
    }
    AuditPage page;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      StoredAudit r;
      r.seq = sqlite3_column_int64(st, 0);
      auto entry = DecodeEntry(Text(st, 1));
      r.json =
          entry.ok()
              ? AuditEventJson(*entry, r.seq)
              : R"({"resourceType":"AuditEvent","id":")" + std::to_string(r.seq) +
                    R"(","outcomeDesc":"this record cannot be read; run taproot audit verify"})";
      r.alert = sqlite3_column_int(st, 2) != 0;
      r.acknowledged = sqlite3_column_int(st, 3) != 0;
      page.records.push_back(std::move(r));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return Status::Internal("audit log: " + reader_db_.Error());
    if (static_cast<int64_t>(page.records.size()) > q.count) {
      page.records.pop_back();
      page.next_before_seq = page.records.empty() ? 0 : page.records.back().seq;
    }
    return page;
  }

 private:
  struct Pending {
    AuditEntry entry;
    AuditLog::Done done;
    int64_t seq = 0;
  };

  // Group commit: the writer takes every record queued while it was committing the last batch,
  // commits them together with one sync, then tells each caller.
  void Loop() {
    for (;;) {
      std::deque<Pending> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;  // closed and drained
        batch.swap(queue_);
      }
      Status st = Commit(batch);
      for (Pending& p : batch) p.done(st, st.ok() ? p.seq : 0);
    }
  }

  Status Commit(std::deque<Pending>& batch) {
    int64_t seq = last_seq_;
    std::string hash = last_hash_.empty() ? kZero : last_hash_;
    RETURN_IF_ERROR(writer_db_.Exec("BEGIN IMMEDIATE"));
    auto fail = [&](Status s) {
      (void)writer_db_.Exec("ROLLBACK");
      return s;
    };
    auto ins = writer_db_.Prepare(
        "INSERT INTO audit(seq, ts, user, patients, subtype, action, outcome, alert, "
        "acknowledges, body, prev, hash) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!ins.ok()) return fail(ins.status());
    sqlite3_stmt* st = *ins;
    for (Pending& p : batch) {
      const AuditEntry& e = p.entry;
      ++seq;
      std::string patients = " ";
      for (const std::string& id : e.patients) patients += id + " ";
      std::string body = EncodeEntry(e);
      std::string next = ChainHash(hash, seq, body);
      sqlite3_reset(st);
      sqlite3_bind_int64(st, 1, seq);
      sqlite3_bind_int64(st, 2, e.time_us);
      sqlite3_bind_text(st, 3, e.user.data(), static_cast<int>(e.user.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 4, patients.data(), static_cast<int>(patients.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 5, e.subtype.data(), static_cast<int>(e.subtype.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 6, e.action.data(), static_cast<int>(e.action.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 7, e.outcome.data(), static_cast<int>(e.outcome.size()), SQLITE_STATIC);
      sqlite3_bind_int(st, 8, e.alert ? 1 : 0);
      if (e.acknowledges) {
        sqlite3_bind_int64(st, 9, e.acknowledges);
      } else {
        sqlite3_bind_null(st, 9);
      }
      sqlite3_bind_text(st, 10, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 11, hash.data(), static_cast<int>(hash.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 12, next.data(), static_cast<int>(next.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(st) != SQLITE_DONE) {
        return fail(Status::Internal("audit log: " + writer_db_.Error()));
      }
      p.seq = seq;
      hash = next;
    }
    sqlite3_reset(st);
    RETURN_IF_ERROR(writer_db_.Exec("COMMIT"));
    last_seq_ = seq;
    last_hash_ = hash;
    // The anchor is rewritten at most five times a second: a rename per commit would cost more
    // than the commit. Records cut off within that window are not caught by it.
    auto now = std::chrono::steady_clock::now();
    if (now - anchored_at_ >= std::chrono::milliseconds(200)) {
      WriteAnchor();
      anchored_at_ = now;
    }
    return Status::Ok();
  }

  // Best effort and unsynced: an anchor that lags the log after a crash still proves the
  // records up to it; Verify() only requires that the log reaches the anchor and agrees there.
  void WriteAnchor() {
    std::string tmp = HeadPath(dir_) + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << last_seq_ << " " << last_hash_ << "\n";
    }
    std::rename(tmp.c_str(), HeadPath(dir_).c_str());
  }

  std::string dir_;
  bool sync_;
  int lock_fd_ = -1;
  Db writer_db_;  // the writer thread's (and Start's)
  Db reader_db_;  // under read_mu_
  std::mutex read_mu_;
  int64_t last_seq_ = 0;  // as writer_db_
  std::string last_hash_;
  std::chrono::steady_clock::time_point anchored_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;  // guarded by mu_
  bool closed_ = false;        // guarded by mu_
  std::thread writer_;
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AuditLog::~AuditLog() = default;

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& dir, bool sync) {
  auto impl = std::make_unique<Impl>(dir, sync);
  RETURN_IF_ERROR(impl->Start());
  impl->StartWriter();
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

Result<int64_t> AuditLog::Append(AuditEntry entry) {
  std::promise<Result<int64_t>> promise;
  auto future = promise.get_future();
  impl_->AppendAsync(std::move(entry), [&promise](const Status& st, int64_t seq) {
    promise.set_value(st.ok() ? Result<int64_t>(seq) : Result<int64_t>(st));
  });
  return future.get();
}

void AuditLog::AppendAsync(AuditEntry entry, Done done) {
  impl_->AppendAsync(std::move(entry), std::move(done));
}
Result<AuditPage> AuditLog::Search(const AuditQuery& query) { return impl_->Search(query); }

Result<VerifyReport> AuditLog::Verify(const std::string& dir) {
  if (!std::filesystem::exists(DbPath(dir))) {
    return Status::NotFound("no audit log at " + DbPath(dir));
  }
  Db db;
  RETURN_IF_ERROR(db.Open(DbPath(dir), true));
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   db.Prepare("SELECT seq, body, prev, hash FROM audit ORDER BY rowid"));
  VerifyReport report;
  std::string hash = kZero;
  int64_t expect = 1;
  auto broken = [&](int64_t seq, std::string why) {
    report.ok = false;
    report.first_broken = seq;
    report.problem = std::move(why);
  };
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    std::string body = Text(st, 1), prev = Text(st, 2), stored = Text(st, 3);
    if (seq != expect) {
      broken(expect, seq > expect
                         ? "record " + std::to_string(expect) + " is missing (the next record is " +
                               std::to_string(seq) + ")"
                         : "record " + std::to_string(seq) + " is out of order");
      break;
    }
    if (prev != hash) {
      broken(seq, "record " + std::to_string(seq) +
                      " does not follow the record before it (its previous hash differs)");
      break;
    }
    std::string computed = ChainHash(hash, seq, body);
    if (computed != stored) {
      broken(seq, "record " + std::to_string(seq) + " was altered (its hash does not match)");
      break;
    }
    hash = computed;
    ++report.records;
    ++expect;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Status::Internal("audit log: " + db.Error());
  if (!report.ok) return report;
  std::ifstream anchor(HeadPath(dir));
  int64_t anchor_seq = 0;
  std::string anchor_hash;
  if (anchor >> anchor_seq >> anchor_hash && anchor_seq > 0) {
    if (anchor_seq > report.records) {
      broken(report.records + 1, "the log ends at record " + std::to_string(report.records) +
                                     " but the anchor (audit.head) records " +
                                     std::to_string(anchor_seq) + ": records were cut off the end");
    } else {
      ASSIGN_OR_RETURN(sqlite3_stmt * h, db.Prepare("SELECT hash FROM audit WHERE seq = ?"));
      sqlite3_bind_int64(h, 1, anchor_seq);
      std::string at = sqlite3_step(h) == SQLITE_ROW ? Text(h, 0) : std::string();
      sqlite3_reset(h);
      if (at != anchor_hash) {
        broken(anchor_seq,
               "record " + std::to_string(anchor_seq) + " does not match the anchor (audit.head)");
      }
    }
  }
  return report;
}

Result<std::pair<int64_t, std::string>> AuditLog::Head(const std::string& dir) {
  Db db;
  RETURN_IF_ERROR(db.Open(DbPath(dir), true));
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   db.Prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
  std::pair<int64_t, std::string> out{0, kZero};
  if (sqlite3_step(st) == SQLITE_ROW) out = {sqlite3_column_int64(st, 0), Text(st, 1)};
  sqlite3_reset(st);
  return out;
}

}  // namespace taproot::audit
