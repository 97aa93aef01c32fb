#include "audit/audit_log.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
constexpr size_t kHashLen = 64;

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string LogPath(const std::string& dir) { return dir + "/audit.log"; }
std::string IndexPath(const std::string& dir) { return dir + "/audit.db"; }
std::string HeadPath(const std::string& dir) { return dir + "/audit.head"; }

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// One line of the log: "<seq> <hash> <body>" (without its newline).
struct Line {
  int64_t seq = 0;
  std::string_view hash, body;
};

std::optional<Line> ParseLine(std::string_view text) {
  Line line;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), line.seq);
  size_t pos = static_cast<size_t>(end - text.data());
  if (ec != std::errc() || line.seq <= 0 || pos + 1 + kHashLen + 1 > text.size() ||
      text[pos] != ' ' || text[pos + 1 + kHashLen] != ' ') {
    return std::nullopt;
  }
  line.hash = text.substr(pos + 1, kHashLen);
  line.body = text.substr(pos + 2 + kHashLen);
  return line;
}

bool WriteAt(int fd, int64_t off, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = pwrite(fd, data.data(), data.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    off += n;
  }
  return true;
}

bool ReadAt(int fd, int64_t off, size_t len, std::string& out) {
  out.resize(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, out.data() + got, len - got, off + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// The log's end: the size up to its last newline (a longer file ends in a record whose write
// never finished, so was never acknowledged) and the last whole record, if any.
struct Tail {
  int64_t complete_size = 0;
  int64_t file_size = 0;
  bool unfinished = false;  // bytes other than zeros follow the last whole record
  int64_t last_seq = 0;
  std::string last_hash;
};

Result<Tail> ReadTail(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::Internal(Errno("audit log: fstat"));
  Tail tail;
  tail.file_size = st.st_size;
  // Read backwards in doubling windows until the window holds the last whole line.
  for (int64_t window = 64 * 1024;; window *= 2) {
    int64_t from = std::max<int64_t>(0, tail.file_size - window);
    std::string buf;
    if (!ReadAt(fd, from, static_cast<size_t>(tail.file_size - from), buf)) {
      return Status::Internal(Errno("audit log: read"));
    }
    size_t end = buf.rfind('\n');
    if (end == std::string::npos) {
      if (from > 0) continue;
      tail.unfinished = buf.find_first_not_of('\0') != std::string::npos;
      return tail;  // no whole record at all
    }
    tail.complete_size = from + static_cast<int64_t>(end) + 1;
    tail.unfinished = buf.find_first_not_of('\0', end + 1) != std::string::npos;
    size_t start = end == 0 ? std::string::npos : buf.rfind('\n', end - 1);
    if (start == std::string::npos && from > 0) continue;
    start = start == std::string::npos ? 0 : start + 1;
    auto line = ParseLine(std::string_view(buf).substr(start, end - start));
    if (!line) {
      return Status::Internal(
          "audit log: its last record cannot be read; run taproot audit verify");
    }
    tail.last_seq = line->seq;
    tail.last_hash = std::string(line->hash);
    return tail;
  }
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
      return Status::Unavailable("cannot open the audit index " + path + ": " + Error());
    }
    sqlite3_busy_timeout(db_, 5000);
    return Status::Ok();
  }
  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return Status::Internal("audit index: " + msg);
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
      return Status::Internal("audit index: " + Error());
    }
    cache_[sql] = st;
    return st;
  }
  std::string Error() const { return db_ ? sqlite3_errmsg(db_) : "no database"; }

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

void BindText(sqlite3_stmt* st, int col, const std::string& s) {
  sqlite3_bind_text(st, col, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
}

// The index: where each record is in the log and the facts auditors search by. It is derived
// from the log and rebuilt from it as needed, so it is never synced on its own account.
// audit_index has a row per record; its secondary indexes grow at their right edge (time) or
// hold rare rows (alerts, acknowledgements). Patients and users, whose keys would take inserts
// all over a B-tree, are posting lists instead: one row per key and indexed batch, holding the
// batch's seqs for that key (PutSeqs), so a batch costs a row per distinct key, not per record.
constexpr const char* kIndexSchema = R"(
CREATE TABLE IF NOT EXISTS audit_index(
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  user TEXT NOT NULL,
  subtype TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL,
  alert INTEGER NOT NULL,
  acknowledges INTEGER,
  off INTEGER NOT NULL,
  len INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS audit_index_ts ON audit_index(ts);
CREATE INDEX IF NOT EXISTS audit_index_ack ON audit_index(acknowledges)
  WHERE acknowledges IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_index_alert ON audit_index(seq) WHERE alert = 1;
CREATE TABLE IF NOT EXISTS audit_posting(
  key TEXT NOT NULL,
  last_seq INTEGER NOT NULL,
  seqs BLOB NOT NULL,
  PRIMARY KEY(key, last_seq)) WITHOUT ROWID;
)";

// Before the log was a file of its own, records lived in audit.db's `audit` table (seq, body,
// prev, hash). Copies them, hashes untouched, into a new log; returns how many.
Result<int64_t> CopyTableIntoLog(const std::string& dir) {
  Db db;
  RETURN_IF_ERROR(db.Open(IndexPath(dir), false));
  ASSIGN_OR_RETURN(sqlite3_stmt * has,
                   db.Prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit'"));
  bool legacy = sqlite3_step(has) == SQLITE_ROW;
  sqlite3_reset(has);
  if (!legacy) return 0;
  std::string tmp = LogPath(dir) + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Internal(Errno("audit log: create " + tmp));
  ASSIGN_OR_RETURN(sqlite3_stmt * rows,
                   db.Prepare("SELECT seq, hash, body FROM audit ORDER BY seq"));
  int64_t n = 0, written = 0;
  std::string buf;
  bool ok = true;
  auto flush = [&] {
    ok = ok && WriteAt(fd, written, buf);
    written += static_cast<int64_t>(buf.size());
    buf.clear();
  };
  int rc;
  while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
    buf += std::to_string(sqlite3_column_int64(rows, 0));
    buf += ' ';
    buf += Text(rows, 1);
    buf += ' ';
    buf += Text(rows, 2);
    buf += '\n';
    ++n;
    if (buf.size() > (1 << 20)) flush();
  }
  sqlite3_reset(rows);
  flush();
  ok = ok && rc == SQLITE_DONE && fsync(fd) == 0;
  close(fd);
  if (!ok || std::rename(tmp.c_str(), LogPath(dir).c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::Internal(Errno("audit log: moving the records of audit.db into audit.log"));
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return n;
}

Result<int64_t> MoveTableIntoLog(const std::string& dir) {
  ASSIGN_OR_RETURN(int64_t n, CopyTableIntoLog(dir));
  // The rest of audit.db is the old table's indexes: the new index is built from the log in a
  // new file, rather than beside the freed pages of the old one.
  if (n > 0) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((IndexPath(dir) + suffix).c_str());
  }
  return n;
}

// Ascending seqs as LEB128 varints: the first, then each difference from the one before.
std::string PutSeqs(const std::vector<int64_t>& seqs) {
  std::string out;
  int64_t prev = 0;
  for (int64_t seq : seqs) {
    auto v = static_cast<uint64_t>(seq - prev);
    prev = seq;
    do {
      auto byte = static_cast<unsigned char>(v & 0x7f);
      v >>= 7;
      out += static_cast<char>(v ? byte | 0x80 : byte);
    } while (v);
  }
  return out;
}

std::vector<int64_t> GetSeqs(std::string_view blob) {
  std::vector<int64_t> seqs;
  int64_t prev = 0;
  uint64_t v = 0;
  int shift = 0;
  for (char ch : blob) {
    auto byte = static_cast<unsigned char>(ch);
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    shift += 7;
    if (byte & 0x80 && shift < 64) continue;
    prev += static_cast<int64_t>(v);
    seqs.push_back(prev);
    v = 0;
    shift = 0;
  }
  return seqs;
}

}  // namespace

std::string ChainHash(const std::string& prev_hex, int64_t seq, std::string_view text) {
  // The digest is fetched once and each thread keeps its context: OpenSSL 3 would otherwise
  // look the algorithm up and allocate a context for every record.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Ctx {
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(md); }
  };
  thread_local Ctx ctx;
  EVP_MD_CTX* md = ctx.md;
  char seq_text[24] = "|";
  char* end = std::to_chars(seq_text + 1, seq_text + sizeof(seq_text) - 1, seq).ptr;
  *end++ = '|';
  unsigned char out[32];
  unsigned int len = 0;
  EVP_DigestInit_ex2(md, kSha256, nullptr);
  EVP_DigestUpdate(md, prev_hex.data(), prev_hex.size());
  EVP_DigestUpdate(md, seq_text, static_cast<size_t>(end - seq_text));
  EVP_DigestUpdate(md, text.data(), text.size());
  EVP_DigestFinal_ex(md, out, &len);
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
    if (!std::filesystem::exists(LogPath(dir_)) && std::filesystem::exists(IndexPath(dir_))) {
      ASSIGN_OR_RETURN(int64_t moved, MoveTableIntoLog(dir_));
      if (moved > 0) {
        LogInfo("audit: moved " + std::to_string(moved) + " records from audit.db into audit.log");
      }
    }
    // O_DSYNC: each write returns once its data (and the metadata needed to read it back) is
    // on stable storage, as write + fdatasync would, in one system call instead of two.
    log_fd_ =
        open(LogPath(dir_).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (sync_ ? O_DSYNC : 0), 0600);
    if (log_fd_ < 0)
      return Status::Unavailable(Errno("cannot open the audit log " + LogPath(dir_)));
    ASSIGN_OR_RETURN(Tail tail, ReadTail(log_fd_));
    log_size_ = tail.complete_size;
    allocated_ = tail.file_size;
    if (tail.unfinished) {
      // A batch that was being written when the process stopped: never synced, never
      // acknowledged, so never part of the trail.
      if (ftruncate(log_fd_, tail.complete_size) != 0) {
        return Status::Internal(Errno("audit log: dropping an unfinished record"));
      }
      allocated_ = log_size_;
      LogWarn("audit: dropped an unfinished record at the end of " + LogPath(dir_));
    }
    last_seq_ = tail.last_seq;
    last_hash_ = tail.last_seq ? tail.last_hash : kZero;
    if (sync_) RETURN_IF_ERROR(OpenDirect());
    RETURN_IF_ERROR(index_.Open(IndexPath(dir_), false));
    RETURN_IF_ERROR(index_.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
    // Posting lists take inserts all over their B-tree (keyed by patient or user): a cache that
    // holds its pages spares a read per insert.
    RETURN_IF_ERROR(index_.Exec("PRAGMA cache_size=-65536;"));
    RETURN_IF_ERROR(index_.Exec(kIndexSchema));
    return CatchUpIndex();
  }

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
    if (writer_.joinable()) writer_.join();  // commits what is queued first
    {
      std::lock_guard lock(index_queue_mu_);
      index_closed_ = true;
    }
    index_cv_.notify_all();
    if (indexer_.joinable()) indexer_.join();
    if (last_seq_ > 0) WriteAnchor();
    if (direct_fd_ >= 0) close(direct_fd_);
    if (log_fd_ >= 0) close(log_fd_);
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
    std::free(block_buf_);
  }

  void StartThreads() {
    // Named for top -H and perf, where they would otherwise pass for request threads.
    writer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "audit-writer");
      WriteLoop();
    });
    indexer_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "audit-index");
      IndexLoop();
    });
  }

  void AppendAsync(AuditEntry entry, AuditLog::Done done) {
    // Encoded by the caller, so that callers on several threads share the work.
    std::string body = EncodeEntry(entry);
    {
      std::lock_guard lock(mu_);
      if (!closed_) {
        queue_.push_back(Pending{std::move(entry), std::move(body), std::move(done)});
        // The writer sleeps only on an empty queue.
        if (queue_.size() == 1) cv_.notify_one();
        return;
      }
    }
    done(Status::Unavailable("the audit log is closed"), 0);
  }

  Result<AuditPage> Search(const AuditQuery& q) {
    std::string where;
    std::vector<std::string> texts;
    auto bind_text = [&](const std::string& clause, const std::string& v) {
      where += clause;
      texts.push_back(v);
    };
    if (q.id) where += " AND seq = " + std::to_string(*q.id);
    if (!q.user.empty()) bind_text(" AND user = ?", q.user);
    if (!q.subtype.empty()) bind_text(" AND subtype = ?", q.subtype);
    if (!q.action.empty()) bind_text(" AND action = ?", q.action);
    if (!q.outcome.empty()) bind_text(" AND outcome = ?", q.outcome);
    if (q.from_us) where += " AND ts >= " + std::to_string(*q.from_us);
    if (q.to_us) where += " AND ts < " + std::to_string(*q.to_us);
    if (q.open_alerts_only) {
      where +=
          " AND alert = 1 AND NOT EXISTS(SELECT 1 FROM audit_index k WHERE k.acknowledges = "
          "a.seq)";
    }
    if (q.before_seq) where += " AND seq < " + std::to_string(*q.before_seq);
    const size_t want = static_cast<size_t>(q.count) + 1;
    AuditPage page;
    std::lock_guard lock(index_mu_);
    // Every record acknowledged so far is searchable: index what is still queued first.
    RETURN_IF_ERROR(IndexQueuedLocked());
    // Runs the query over audit_index with `extra` conditions, newest first, adding rows to
    // the page until it holds `want`.
    auto run = [&](const std::string& extra) -> Status {
      std::string sql =
          "SELECT seq, off, len, alert, "
          "EXISTS(SELECT 1 FROM audit_index k WHERE k.acknowledges = a.seq) "
          "FROM audit_index a WHERE 1=1" +
          where + extra + " ORDER BY seq DESC LIMIT " + std::to_string(want - page.records.size());
      ASSIGN_OR_RETURN(sqlite3_stmt * st, index_.Prepare(sql));
      for (size_t i = 0; i < texts.size(); ++i) BindText(st, static_cast<int>(i + 1), texts[i]);
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        page.records.push_back(Stored(st));
      }
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return Status::Internal("audit index: " + index_.Error());
      return Status::Ok();
    };
    std::string key = !q.patient.empty() ? "p|" + q.patient
                      : !q.user.empty()  ? "u|" + q.user
                                         : std::string();
    if (key.empty()) {
      RETURN_IF_ERROR(run(""));
    } else {
      // The key's posting lists, newest first, in chunks of candidates checked against the
      // other conditions. Batches hold disjoint runs of seqs, so the order holds across them.
      ASSIGN_OR_RETURN(sqlite3_stmt * postings,
                       index_.Prepare("SELECT seqs FROM audit_posting WHERE key = ? "
                                      "ORDER BY last_seq DESC"));
      BindText(postings, 1, key);
      Status st;
      std::string chunk;
      int in_chunk = 0;
      auto flush = [&]() -> Status {
        if (in_chunk == 0) return Status::Ok();
        Status s = run(" AND seq IN (" + chunk + ")");
        chunk.clear();
        in_chunk = 0;
        return s;
      };
      int rc;
      while (page.records.size() < want && (rc = sqlite3_step(postings)) == SQLITE_ROW) {
        auto blob = static_cast<const char*>(sqlite3_column_blob(postings, 0));
        std::vector<int64_t> seqs = GetSeqs(std::string_view(
            blob ? blob : "", static_cast<size_t>(sqlite3_column_bytes(postings, 0))));
        for (auto it = seqs.rbegin(); it != seqs.rend() && page.records.size() < want; ++it) {
          if (q.before_seq && *it >= *q.before_seq) continue;
          if (in_chunk) chunk += ',';
          chunk += std::to_string(*it);
          if (++in_chunk == 256) st = flush();
          if (!st.ok()) break;
        }
        if (!st.ok()) break;
      }
      sqlite3_reset(postings);
      if (st.ok() && page.records.size() < want) st = flush();
      RETURN_IF_ERROR(st);
    }
    if (page.records.size() >= want) {
      page.records.resize(want - 1);
      page.next_before_seq = page.records.empty() ? 0 : page.records.back().seq;
    }
    return page;
  }

 private:
  // A row of the search (seq, off, len, alert, acknowledged) with its record read from the log.
  StoredAudit Stored(sqlite3_stmt* st) {
    StoredAudit r;
    r.seq = sqlite3_column_int64(st, 0);
    std::string line;
    std::optional<Line> parsed;
    if (ReadAt(log_fd_, sqlite3_column_int64(st, 1),
               static_cast<size_t>(sqlite3_column_int64(st, 2)), line)) {
      parsed = ParseLine(line);
    }
    auto entry = parsed && parsed->seq == r.seq ? DecodeEntry(parsed->body)
                                                : Result<AuditEntry>(Status::Internal("moved"));
    r.json = entry.ok()
                 ? AuditEventJson(*entry, r.seq)
                 : R"({"resourceType":"AuditEvent","id":")" + std::to_string(r.seq) +
                       R"(","outcomeDesc":"this record cannot be read; run taproot audit verify"})";
    r.alert = sqlite3_column_int(st, 3) != 0;
    r.acknowledged = sqlite3_column_int(st, 4) != 0;
    return r;
  }

  struct Pending {
    AuditEntry entry;
    std::string body;
    AuditLog::Done done;
    int64_t seq = 0;
    int64_t off = 0, len = 0;  // the record's line in the log
  };

  // Group commit: the writer takes every record queued while it was committing the last batch,
  // appends them with one synchronous write (O_DSYNC), then tells each caller. The index
  // follows later.
  void WriteLoop() {
    for (;;) {
      std::deque<Pending> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;  // closed and drained
        batch.swap(queue_);
      }
      Status st = Commit(batch);
      // Callers are told after their records are queued for the index, so that a search they
      // send next finds them. The callbacks leave with the records: one may hold a waiting
      // connection, which the index queue must not keep.
      std::vector<std::pair<AuditLog::Done, int64_t>> dones;
      dones.reserve(batch.size());
      for (Pending& p : batch) dones.emplace_back(std::move(p.done), st.ok() ? p.seq : 0);
      bool wake = false;
      if (st.ok()) {
        std::lock_guard lock(index_queue_mu_);
        for (Pending& p : batch) index_queue_.push_back(std::move(p));
        wake = index_queue_.size() >= kIndexBatch;
      }
      if (wake) index_cv_.notify_one();
      for (auto& [done, seq] : dones) done(st, seq);
    }
  }

  Status Commit(std::deque<Pending>& batch) {
    // After a failed write or sync the kernel may have dropped pages of the file: nothing more
    // is appended until a restart has checked the log's end again.
    if (!failed_.ok()) return failed_;
    int64_t seq = last_seq_;
    std::string hash = last_hash_;
    std::string buf;
    buf.reserve(batch.size() * 400);
    for (Pending& p : batch) {
      ++seq;
      hash = ChainHash(hash, seq, p.body);
      size_t start = buf.size();
      buf += std::to_string(seq);
      buf += ' ';
      buf += hash;
      buf += ' ';
      buf += p.body;
      p.seq = seq;
      p.off = log_size_ + static_cast<int64_t>(start);
      p.len = static_cast<int64_t>(buf.size() - start);
      buf += '\n';
    }
    if (!Append(buf)) {
      failed_ = Status::Unavailable(Errno("the audit log cannot be written"));
      LogError(failed_.message());
      // Leave no partial batch behind for the next start to mistake for records.
      (void)!ftruncate(log_fd_, log_size_);
      allocated_ = log_size_;
      return failed_;
    }
    log_size_ += static_cast<int64_t>(buf.size());
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

  // Direct writes (O_DIRECT | O_DSYNC) skip the page cache: each commit is one device write of
  // the blocks it touches, where a buffered O_DSYNC write is a copy into the cache, its
  // writeback and a cache flush. Measured on a virtio disk, a commit cost about half the CPU
  // (bench/RESULTS.md, twelfth session), and on two cores the commits' CPU is what an audited
  // request pays most for. Where the filesystem refuses O_DIRECT (tmpfs), commits stay
  // buffered O_DSYNC writes.
  Status OpenDirect() {
    direct_fd_ = open(LogPath(dir_).c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT | O_DSYNC);
    if (direct_fd_ < 0) {
      LogInfo("audit: " + Errno("direct writes are not available for " + LogPath(dir_)) +
              "; commits go through the page cache");
      return Status::Ok();
    }
    // The last block's bytes before the end of the log: each commit rewrites that block whole.
    int64_t block_at = log_size_ / kBlock * kBlock;
    if (!ReadAt(log_fd_, block_at, static_cast<size_t>(log_size_ - block_at), last_block_)) {
      return Status::Internal(Errno("audit log: read"));
    }
    return Status::Ok();
  }

  // Writes `records` at the end of the log and makes them durable.
  bool Append(const std::string& records) {
    int64_t end = log_size_ + static_cast<int64_t>(records.size());
    if (direct_fd_ < 0) return Preallocate(end) && WriteAt(log_fd_, log_size_, records);
    // Whole blocks from the one the log ends in: its bytes so far, the records, then zeros up
    // to the block's end (the preallocated zeros the next commit writes over).
    int64_t block_at = log_size_ / kBlock * kBlock;
    size_t len = last_block_.size() + records.size();
    size_t padded = (len + kBlock - 1) / kBlock * kBlock;
    if (!Preallocate(block_at + static_cast<int64_t>(padded))) return false;
    if (padded > block_cap_) {
      std::free(block_buf_);
      block_cap_ = std::max(padded, static_cast<size_t>(64 * kBlock));
      block_buf_ = static_cast<char*>(std::aligned_alloc(kBlock, block_cap_));
      if (!block_buf_) {
        block_cap_ = 0;
        errno = ENOMEM;
        return false;
      }
    }
    std::memcpy(block_buf_, last_block_.data(), last_block_.size());
    std::memcpy(block_buf_ + last_block_.size(), records.data(), records.size());
    std::memset(block_buf_ + len, 0, padded - len);
    if (!WriteAt(direct_fd_, block_at, std::string_view(block_buf_, padded))) return false;
    int64_t new_block_at = end / kBlock * kBlock;
    last_block_.assign(block_buf_ + (new_block_at - block_at),
                       static_cast<size_t>(end - new_block_at));
    return true;
  }

  // The file is grown ahead of the records, in zeroed chunks: a sync after a write that leaves
  // the file's size alone flushes the data only, where one that grows the file must also write
  // its inode, a second synchronous device write. The zeros after the last record are not a
  // record (no newline ends them): Verify ignores them and the next start writes over them.
  bool Preallocate(int64_t need) {
    if (need <= allocated_) return true;
    static const std::string kZeros(1 << 20, '\0');
    int64_t target = (need / kChunk + 1) * kChunk;
    for (int64_t at = allocated_; at < target; at += static_cast<int64_t>(kZeros.size())) {
      if (!WriteAt(log_fd_, at, kZeros)) return false;
    }
    allocated_ = target;
    return true;
  }

  // Indexes what the writer has committed, in large transactions: every second, or sooner when
  // many records wait, or when a search asks.
  void IndexLoop() {
    for (;;) {
      bool closing;
      {
        std::unique_lock lock(index_queue_mu_);
        index_cv_.wait_for(lock, std::chrono::seconds(1),
                           [&] { return index_closed_ || index_queue_.size() >= kIndexBatch; });
        closing = index_closed_;
      }
      {
        std::lock_guard lock(index_mu_);
        Status st = IndexQueuedLocked();
        if (!st.ok()) LogError(st.message());  // the next start rebuilds it from the log
      }
      if (closing) return;
    }
  }

  // Under index_mu_.
  Status IndexQueuedLocked() {
    std::deque<Pending> items;
    {
      std::lock_guard lock(index_queue_mu_);
      items.swap(index_queue_);
    }
    return IndexRows(items);
  }

  Status IndexRows(std::deque<Pending>& items) {
    if (items.empty()) return Status::Ok();
    RETURN_IF_ERROR(index_.Exec("BEGIN"));
    auto fail = [&](Status s) {
      (void)index_.Exec("ROLLBACK");
      return s;
    };
    auto ins = index_.Prepare(
        "INSERT OR IGNORE INTO audit_index(seq, ts, user, subtype, action, outcome, alert, "
        "acknowledges, off, len) VALUES(?,?,?,?,?,?,?,?,?,?)");
    if (!ins.ok()) return fail(ins.status());
    std::map<std::string, std::vector<int64_t>> postings;
    for (const Pending& p : items) {
      const AuditEntry& e = p.entry;
      sqlite3_stmt* st = *ins;
      sqlite3_reset(st);
      sqlite3_bind_int64(st, 1, p.seq);
      sqlite3_bind_int64(st, 2, e.time_us);
      BindText(st, 3, e.user);
      BindText(st, 4, e.subtype);
      BindText(st, 5, e.action);
      BindText(st, 6, e.outcome);
      sqlite3_bind_int(st, 7, e.alert ? 1 : 0);
      if (e.acknowledges) {
        sqlite3_bind_int64(st, 8, e.acknowledges);
      } else {
        sqlite3_bind_null(st, 8);
      }
      sqlite3_bind_int64(st, 9, p.off);
      sqlite3_bind_int64(st, 10, p.len);
      if (sqlite3_step(st) != SQLITE_DONE) {
        return fail(Status::Internal("audit index: " + index_.Error()));
      }
      for (const std::string& patient : e.patients) postings["p|" + patient].push_back(p.seq);
      if (!e.user.empty()) postings["u|" + e.user].push_back(p.seq);
    }
    sqlite3_reset(*ins);
    auto post =
        index_.Prepare("INSERT OR REPLACE INTO audit_posting(key, last_seq, seqs) VALUES(?,?,?)");
    if (!post.ok()) return fail(post.status());
    for (auto& [key, seqs] : postings) {
      // A search touching the same patient twice lists it twice.
      seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
      std::string blob = PutSeqs(seqs);
      sqlite3_stmt* st = *post;
      sqlite3_reset(st);
      BindText(st, 1, key);
      sqlite3_bind_int64(st, 2, seqs.back());
      sqlite3_bind_blob(st, 3, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      if (sqlite3_step(st) != SQLITE_DONE) {
        return fail(Status::Internal("audit index: " + index_.Error()));
      }
    }
    sqlite3_reset(*post);
    return index_.Exec("COMMIT");
  }

  // At start: indexes the records the index does not have yet (after a crash, an upgrade, or a
  // deleted audit.db), reading the log from the end of the last indexed one.
  Status CatchUpIndex() {
    ASSIGN_OR_RETURN(sqlite3_stmt * st, index_.Prepare("SELECT seq, off + len + 1 FROM audit_index "
                                                       "ORDER BY seq DESC LIMIT 1"));
    int64_t indexed = 0, from = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
      indexed = sqlite3_column_int64(st, 0);
      from = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (indexed >= last_seq_) return Status::Ok();
    if (indexed > 0) {
      // Check that the index and the log agree where the catch-up starts.
      std::string probe;
      bool aligned = from <= log_size_ && ReadAt(log_fd_, from - 1, 1, probe) && probe == "\n";
      if (!aligned) {
        from = 0;
        indexed = 0;
      }
    }
    std::deque<Pending> items;
    int64_t added = 0;
    std::string chunk, carry;
    int64_t pos = from;
    while (pos < log_size_) {
      size_t want = static_cast<size_t>(std::min<int64_t>(1 << 20, log_size_ - pos));
      if (!ReadAt(log_fd_, pos, want, chunk)) return Status::Internal(Errno("audit log: read"));
      int64_t chunk_at = pos - static_cast<int64_t>(carry.size());
      pos += static_cast<int64_t>(want);
      carry += chunk;
      size_t start = 0;
      for (size_t nl; (nl = carry.find('\n', start)) != std::string::npos; start = nl + 1) {
        auto line = ParseLine(std::string_view(carry).substr(start, nl - start));
        if (!line || line->seq <= indexed) continue;  // verify names unreadable records
        auto entry = DecodeEntry(line->body);
        Pending p;
        if (entry.ok()) p.entry = std::move(*entry);
        p.seq = line->seq;
        p.off = chunk_at + static_cast<int64_t>(start);
        p.len = static_cast<int64_t>(nl - start);
        items.push_back(std::move(p));
        if (items.size() >= 10000) {
          added += static_cast<int64_t>(items.size());
          RETURN_IF_ERROR(IndexRows(items));
          items.clear();
        }
      }
      carry.erase(0, start);
    }
    added += static_cast<int64_t>(items.size());
    RETURN_IF_ERROR(IndexRows(items));
    if (added > 0) LogInfo("audit: indexed " + std::to_string(added) + " records from the log");
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

  static constexpr size_t kIndexBatch = 100000;
  static constexpr int64_t kChunk = 4 << 20;  // a multiple of kZeros' size and of kBlock
  // Direct writes' unit of offset, length and memory alignment: a multiple of every logical
  // block size in use (512 or 4096).
  static constexpr size_t kBlock = 4096;

  std::string dir_;
  bool sync_;
  int lock_fd_ = -1;
  int log_fd_ = -1;  // appended by the writer; read (pread) by searches and the catch-up

  // The writer thread's (and Start's).
  int64_t log_size_ = 0;   // the end of the last record
  int64_t allocated_ = 0;  // the file's size: zeros from log_size_ on
  int64_t last_seq_ = 0;
  std::string last_hash_;
  Status failed_;
  std::chrono::steady_clock::time_point anchored_at_;
  int direct_fd_ = -1;         // the log opened O_DIRECT | O_DSYNC, or -1: see OpenDirect
  std::string last_block_;     // with direct_fd_: the log's bytes in its last, partial block
  char* block_buf_ = nullptr;  // kBlock-aligned, block_cap_ bytes
  size_t block_cap_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;  // guarded by mu_
  bool closed_ = false;        // guarded by mu_
  std::thread writer_;

  // Committed records waiting to be indexed.
  std::mutex index_queue_mu_;
  std::condition_variable index_cv_;
  std::deque<Pending> index_queue_;  // guarded by index_queue_mu_
  bool index_closed_ = false;        // guarded by index_queue_mu_
  std::thread indexer_;

  std::mutex index_mu_;  // guards index_ (searches and the indexer)
  Db index_;
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AuditLog::~AuditLog() = default;

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& dir, bool sync) {
  auto impl = std::make_unique<Impl>(dir, sync);
  RETURN_IF_ERROR(impl->Start());
  impl->StartThreads();
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
  std::ifstream in(LogPath(dir), std::ios::binary);
  if (!in) {
    return Status::NotFound("no audit log at " + LogPath(dir) +
                            (std::filesystem::exists(IndexPath(dir))
                                 ? " (a log kept in audit.db by an older Taproot moves there "
                                   "when the server next starts)"
                                 : ""));
  }
  VerifyReport report;
  std::string hash = kZero;
  std::ifstream anchor(HeadPath(dir));
  int64_t anchor_seq = 0;
  std::string anchor_hash, hash_at_anchor;
  if (!(anchor >> anchor_seq >> anchor_hash)) anchor_seq = 0;
  int64_t expect = 1;
  auto broken = [&](int64_t seq, std::string why) {
    report.ok = false;
    report.first_broken = seq;
    report.problem = std::move(why);
  };
  std::string text;
  while (std::getline(in, text)) {
    if (in.eof()) break;  // no newline: a write that never finished, so never acknowledged
    auto line = ParseLine(text);
    std::string n = std::to_string(expect);
    if (!line) {
      broken(expect, "the line where record " + n + " should be cannot be read");
      break;
    }
    if (line->seq != expect) {
      broken(expect, line->seq > expect
                         ? "record " + n + " is missing or out of place (the next line holds " +
                               std::to_string(line->seq) + ")"
                         : "record " + std::to_string(line->seq) + " is out of place (record " + n +
                               " was expected)");
      break;
    }
    std::string computed = ChainHash(hash, line->seq, line->body);
    if (computed != line->hash) {
      // Either this record was altered, or the one before it was and its hash recomputed.
      broken(expect, "record " + n + " was altered (its hash does not match)" +
                         (expect > 1 ? ", or record " + std::to_string(expect - 1) +
                                           " was altered and its hash recomputed"
                                     : ""));
      break;
    }
    hash = std::move(computed);
    if (line->seq == anchor_seq) hash_at_anchor = hash;
    ++report.records;
    ++expect;
  }
  if (!report.ok || anchor_seq <= 0) return report;
  if (anchor_seq > report.records) {
    broken(report.records + 1, "the log ends at record " + std::to_string(report.records) +
                                   " but the anchor (audit.head) records " +
                                   std::to_string(anchor_seq) + ": records were cut off the end");
  } else if (hash_at_anchor != anchor_hash) {
    broken(anchor_seq,
           "record " + std::to_string(anchor_seq) + " does not match the anchor (audit.head)");
  }
  return report;
}

Result<std::pair<int64_t, std::string>> AuditLog::Head(const std::string& dir) {
  int fd = open(LogPath(dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("no audit log at " + LogPath(dir));
  auto tail = ReadTail(fd);
  close(fd);
  if (!tail.ok()) return tail.status();
  if (tail->last_seq == 0) return std::pair<int64_t, std::string>{0, kZero};
  return std::pair<int64_t, std::string>{tail->last_seq, tail->last_hash};
}

}  // namespace taproot::audit
