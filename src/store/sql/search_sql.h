// The search compiler shared by the SQL backends (SQLite and PostgreSQL). It turns a SearchQuery
// into statements over the schema both backends keep (versions, current, superseded and one
// idx_* table per index kind), chooses a plan (one clause read first from its index, the others
// checked per candidate) and runs the statements through the backend's SqlRunner.
//
// The two dialects differ only in small things: placeholders, SQLite's INDEXED BY hints and
// CROSS JOIN ordering, a few function names, the top of a "starts with" range and full-text
// matching. Everything else, including the plan, is the same text. In both, an index row names
// its resource type and parameter by one number for the pair, `tp`, from the idx_keys table
// (full-text rows keep the two names).
//
// Only fixed fragments enter the SQL; every value from a query is bound as an argument.
// Thread-safety: stateless; RunSearch uses only the runner it is given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace taproot::store::sql {

enum class Dialect { kSqlite, kPostgres };

// A bound value of a statement: text, integer or real.
struct SqlArg {
  enum Kind { kText, kInt, kReal } kind = kText;
  std::string text;
  int64_t i = 0;
  double d = 0;
};

// The columns a version row is selected with, in the order RunSearch expects them.
inline constexpr const char* kVersionColumns = "type, id, version, ts, deleted, method, body, seq";

// What a backend gives the compiler: statements written with "?" placeholders, run with
// their arguments bound in order.
class SqlRunner {
 public:
  virtual ~SqlRunner() = default;
  // A statement that returns one row with one integer (a count, the newest seq).
  virtual Result<int64_t> QueryInt(const std::string& sql, const std::vector<SqlArg>& args) = 0;
  // A statement that returns version rows (the columns of kVersionColumns, in order). With
  // `extra`, each row has one more integer column, and the first row's value is stored there
  // (left alone when there is no row).
  virtual Result<std::vector<VersionRecord>> QueryVersions(const std::string& sql,
                                                           const std::vector<SqlArg>& args,
                                                           int64_t* extra = nullptr) = 0;
  // The backend's plan for a statement, one line per step (_explain).
  virtual Result<std::vector<std::string>> Explain(const std::string& sql,
                                                   const std::vector<SqlArg>& args) = 0;
  // A statement that returns rows of one text column.
  virtual Result<std::vector<std::string>> QueryTexts(const std::string& sql,
                                                      const std::vector<SqlArg>& args) = 0;
  // The number the store gives a (type, param) pair (idx_keys), or -1 when no index row was
  // ever written with it.
  virtual int64_t IndexKey(std::string_view type, std::string_view param) = 0;
  // Statements run together (RunSearchBatch), each returning version rows or one integer; their
  // results in order. The default runs them one after another.
  struct BatchStatement {
    std::string sql;
    std::vector<SqlArg> args;
    bool versions = true;  // QueryVersions (with `extra` as there), else QueryInt
    bool extra = false;
  };
  struct BatchResult {
    std::vector<VersionRecord> versions;
    int64_t number = -1;  // QueryInt's value, or the first row's extra column
  };
  virtual Result<std::vector<BatchResult>> QueryBatch(const std::vector<BatchStatement>& batch);
  // The newest seq the search can see (its snapshot). A backend that already knows it saves a
  // statement.
  virtual Result<int64_t> NewestSeq() {
    return QueryInt("SELECT coalesce(max(seq), 0) FROM versions", {});
  }
};

Result<SearchPage> RunSearch(Dialect dialect, const SearchQuery& query, SqlRunner& runner);
// ReadView::SearchBatch: the searches that come to one statement have their statements run in one
// QueryBatch; any other runs alone afterwards.
Result<std::vector<SearchPage>> RunSearchBatch(Dialect dialect,
                                               const std::vector<SearchQuery>& queries,
                                               SqlRunner& runner);

// The key under which a store remembers the number of a (type, param) pair: both names, with a
// tab (which neither contains) between them.
std::string PairName(std::string_view type, std::string_view param);

// ReadView::History and ReadView::ReferringTypes over the same schema.
Result<HistoryPage> RunHistory(const HistoryQuery& query, SqlRunner& runner);
Result<std::vector<std::string>> RunReferringTypes(
    Dialect dialect, const std::string& target_type, const std::string& target_id,
    const std::vector<std::pair<std::string, std::string>>& links, SqlRunner& runner);

// The index table of a kind: "idx_token", "idx_date" ...
const char* TableOf(IndexKind kind);

// "?" placeholders numbered for PostgreSQL ("$1", "$2" ...). The compiler writes '?' only as a
// placeholder (never inside a literal), so a plain scan is exact.
std::string NumberPlaceholders(std::string_view sql);

}  // namespace taproot::store::sql
