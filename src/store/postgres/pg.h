// A thin RAII layer over libpq for the PostgreSQL backend: one connection with its own cache of
// prepared statements, results that free themselves, parameters bound as text (bytea as binary),
// and SQLSTATE mapped to Status codes.
//
// Results are requested in binary format: integers arrive as big-endian bytes, bytea as raw
// bytes, text as UTF-8 (no escaping to undo on the hot read path).
//
// Ownership: a Conn owns its PGconn and is used by one thread at a time (the pool hands it out).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

struct pg_conn;
struct pg_result;

namespace taproot::store::pg {

// Bound parameters of one statement.
class Params {
 public:
  Params& Text(std::string v);
  Params& Int(int64_t v);
  Params& Real(double v);
  Params& Bytes(std::string v);  // bytea, sent in binary
  Params& Null();
  size_t size() const { return values_.size(); }

 private:
  friend class Conn;
  struct Value {
    std::string data;
    bool binary = false;
    bool null = false;
  };
  std::vector<Value> values_;
};

// The rows a statement returned; frees the libpq result.
class Rows {
 public:
  explicit Rows(pg_result* r = nullptr) : r_(r) {}
  ~Rows();
  Rows(Rows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Rows& operator=(Rows&& o) noexcept;
  int rows() const;
  bool IsNull(int row, int col) const;
  int64_t Int(int row, int col) const;             // int2, int4 or int8 column
  std::string_view Bytes(int row, int col) const;  // text or bytea, as stored
  std::string Text(int row, int col) const { return std::string(Bytes(row, col)); }

 private:
  pg_result* r_;
};

class Conn {
 public:
  ~Conn();
  // Connects (libpq URL or key=value string). Sessions use UTC and report no notices.
  static Result<std::unique_ptr<Conn>> Open(const std::string& url);

  // Runs SQL without parameters (may hold several statements); for BEGIN, COMMIT, DDL.
  Status Exec(const std::string& sql);

  // A statement planned for its actual values each time (searches).
  Result<Rows> Query(const std::string& sql, const Params& params = {});
  // A statement prepared once per connection and then reused (up to 256 of them; then all are
  // dropped and prepared again as needed).
  Result<Rows> Prepared(const std::string& sql, const Params& params = {});
  // Statements without parameters whose results are only checked (`first`, such as BEGIN), then
  // prepared statements, then more of the first kind (`last`, such as COMMIT), all in one round
  // trip (libpq's pipeline mode); the rows of each prepared statement, in order. The first
  // failure is returned, and the server skips what follows it.
  struct Statement {
    const std::string& sql;
    const Params& params;
  };
  Result<std::vector<Rows>> Pipeline(const std::vector<std::string>& first,
                                     const std::vector<Statement>& statements,
                                     const std::vector<std::string>& last = {});

  // Ends the open transaction with COMMIT, sent not now but at the head of the connection's next
  // round trip (pipelined before the next statements, or by FlushDeferred): a read-only
  // transaction's COMMIT cannot fail for any reason of its own, so waiting for it alone is a
  // round trip spent on nothing. The transaction, and the snapshot it holds back vacuum with,
  // lasts until then: the pool flushes connections left idle (Pool's sweeper).
  void DeferCommit();
  // When the deferred COMMIT was asked for (NowMicros), or 0 when none is waiting.
  int64_t DeferredSince() const { return deferred_since_; }
  // Sends a deferred COMMIT now, if one waits.
  Status FlushDeferred();

  // True when the connection is usable; after a failure, Reset() tries to reconnect.
  bool Healthy() const;
  Status Reset();
  // True when no transaction is open (a failed callback may leave one), counting one whose
  // COMMIT is deferred as closed.
  bool Idle() const;
  // True when a statement failed and the open transaction can only roll back.
  bool InFailedTransaction() const;

  // LISTEN support: waits up to `timeout_ms` for input on the connection, reads it, and returns
  // the payloads of the notifications received (fails when the connection is lost).
  Result<std::vector<std::string>> WaitForNotifications(int timeout_ms);

 private:
  struct Bound;
  Status Check(pg_result* r, std::string_view what);
  // The name of `sql`'s prepared statement, and whether it must still be prepared.
  Result<std::pair<std::string, bool>> StatementName(const std::string& sql);
  pg_conn* c_ = nullptr;
  static constexpr size_t kMaxPrepared = 256;
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> statement name
  uint64_t next_name_ = 0;
  bool broken_ = false;         // a pipeline could not be left: Healthy() is false until Reset()
  int64_t deferred_since_ = 0;  // a COMMIT waits to be sent (DeferCommit)
};

// A PostgreSQL array literal of text values, for unnest() with one parameter per column.
std::string TextArray(const std::vector<std::string_view>& values);
// Array literals of numbers.
std::string IntArray(const std::vector<int64_t>& values);
std::string RealArray(const std::vector<double>& values);

}  // namespace taproot::store::pg
