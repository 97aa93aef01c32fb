#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "common/ids.h"
#include "store/postgres/pg.h"
#include "store/test_stores.h"

namespace taproot::store {
namespace {

using taproot::testing::Backend;
using taproot::testing::TestStore;

// The storage contract (store/store.h), checked on both backends.
class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    place_ = std::make_unique<TestStore>(GetParam());
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    place_.reset();
  }
  void Reopen() {
    store_.reset();
    auto s = place_->Open();
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  static WriteRecord Rec(const std::string& id, int64_t version, const std::string& json,
                         std::vector<IndexEntry> index = {}) {
    WriteRecord r;
    r.version.type = "Patient";
    r.version.id = id;
    r.version.version = version;
    r.version.method = version == 1 ? "POST" : "PUT";
    r.version.json = json;
    r.index = std::make_shared<const std::vector<IndexEntry>>(std::move(index));
    return r;
  }
  Status Put(WriteRecord r) {
    return store_->Write([&](WriteTxn& txn) {
      r.version.last_updated = txn.NextTimestamp();
      return txn.Put(r);
    });
  }
  std::optional<VersionRecord> Current(const std::string& id) {
    std::optional<VersionRecord> out;
    EXPECT_TRUE(store_
                    ->Read([&](ReadView& v) -> Status {
                      ASSIGN_OR_RETURN(out, v.ReadCurrent("Patient", id));
                      return Status::Ok();
                    })
                    .ok());
    return out;
  }

  // The ids a search of `type` with one clause finds, in seq order; its total must agree.
  std::vector<std::string> Find(const std::string& type, IndexClause clause) {
    std::vector<std::string> ids;
    EXPECT_TRUE(store_
                    ->Read([&](ReadView& v) -> Status {
                      SearchQuery q;
                      q.type = type;
                      q.want_total = true;
                      q.clauses.push_back(std::move(clause));
                      ASSIGN_OR_RETURN(SearchPage page, v.Search(q));
                      for (auto& r : page.resources) ids.push_back(r.id);
                      EXPECT_EQ(page.total.value_or(-1), static_cast<int64_t>(ids.size()));
                      return Status::Ok();
                    })
                    .ok());
    return ids;
  }
  static IndexClause Clause(std::string param, IndexKind kind, IndexPredicate p) {
    IndexClause c;
    c.param = std::move(param);
    c.kind = kind;
    c.any_of.push_back(std::move(p));
    return c;
  }

  // After an upgrade of the hand-built store of the Upgrades* tests (Patient p1 in two versions,
  // Observation o1, a row of every kind): each row is found through the new layout, the
  // superseded version's is not, and a write after the upgrade is found beside them, also
  // after a reopen.
  void CheckUpgradedRows() {
    using K = IndexKind;
    IndexPredicate p;
    p.system = "sys";
    p.value = "456";
    EXPECT_EQ(Find("Patient", Clause("identifier", K::kToken, p)),
              (std::vector<std::string>{"p1"}));
    p.value = "123";  // the superseded version's row
    EXPECT_EQ(Find("Patient", Clause("identifier", K::kToken, p)), (std::vector<std::string>{}));
    p = {};
    p.value = "8867-4";
    EXPECT_EQ(Find("Observation", Clause("code", K::kToken, p)), (std::vector<std::string>{"o1"}));
    p = {};
    p.value = "smi";
    p.match = IndexPredicate::Match::kPrefix;
    EXPECT_EQ(Find("Patient", Clause("name", K::kString, p)), (std::vector<std::string>{"p1"}));
    p = {};
    p.start = 100;
    p.end = 199;
    EXPECT_EQ(Find("Patient", Clause("birthdate", K::kDate, p)), (std::vector<std::string>{"p1"}));
    p = {};
    p.low = 0.45;
    p.high = 0.55;
    EXPECT_EQ(Find("Observation", Clause("probability", K::kNumber, p)),
              (std::vector<std::string>{"o1"}));
    p.value = "mg";
    p.low = 4.5;
    p.high = 5.5;
    EXPECT_EQ(Find("Observation", Clause("value-quantity", K::kQuantity, p)),
              (std::vector<std::string>{"o1"}));
    p = {};
    p.system = "Patient";
    p.value = "p1";
    EXPECT_EQ(Find("Observation", Clause("subject", K::kReference, p)),
              (std::vector<std::string>{"o1"}));
    p = {};
    p.value = "http://example.org/p";
    EXPECT_EQ(Find("Patient", Clause("profile", K::kUri, p)), (std::vector<std::string>{"p1"}));

    // Written after the upgrade, found beside the upgraded rows, and after another reopen.
    WriteRecord r = Rec("p2", 1, "{}", {{"identifier", K::kToken, "sys", "789"}});
    ASSERT_TRUE(Put(r).ok());
    Reopen();
    p = {};
    p.system = "sys";
    p.value = "789";
    EXPECT_EQ(Find("Patient", Clause("identifier", K::kToken, p)),
              (std::vector<std::string>{"p2"}));
    p.value = "456";
    EXPECT_EQ(Find("Patient", Clause("identifier", K::kToken, p)),
              (std::vector<std::string>{"p1"}));
  }

  // Rows of the index tables whose version does not exist: left behind by a rolled-back write.
  // Read straight from the database, since searches join each row to its version and would not
  // show them, but a later version given the same seq would.
  int64_t OrphanIndexRows() {
    // Rows name their type by the number of their (type, param) pair (idx_keys): a row whose
    // number is not there is an orphan too.
    std::string sql;
    for (const char* table : {"idx_token", "idx_string", "idx_date", "idx_ref"}) {
      sql += std::string(sql.empty() ? "SELECT " : " + ") + "(SELECT count(*) FROM " + table +
             " t WHERE NOT EXISTS (SELECT 1 FROM versions v JOIN idx_keys k ON k.tp=t.tp AND "
             "k.type=v.type WHERE v.seq=t.seq))";
    }
    if (GetParam() == Backend::kPostgres) {
      auto conn = pg::Conn::Open(place_->url());
      if (!conn.ok()) return -1;
      auto rows = (*conn)->Query(sql);
      return rows.ok() ? rows->Int(0, 0) : -1;
    }
    sqlite3* db = nullptr;
    int64_t n = -1;
    if (sqlite3_open_v2((place_->dir() + "/taproot.db").c_str(), &db, SQLITE_OPEN_READONLY,
                        nullptr) == SQLITE_OK) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
          sqlite3_step(s) == SQLITE_ROW) {
        n = sqlite3_column_int64(s, 0);
      }
      sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return n;
  }

  std::unique_ptr<TestStore> place_;
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         taproot::testing::BackendName);

// What only the embedded store does: one process per directory, group commit.
class SqliteStoreTest : public StoreTest {};
INSTANTIATE_TEST_SUITE_P(Sqlite, SqliteStoreTest, ::testing::Values(Backend::kSqlite),
                         taproot::testing::BackendName);

// What only the PostgreSQL store does: versioned migrations of a shared database.
class PostgresStoreTest : public StoreTest {};
INSTANTIATE_TEST_SUITE_P(Postgres, PostgresStoreTest, ::testing::Values(Backend::kPostgres),
                         taproot::testing::BackendName);

TEST_P(StoreTest, KeepsEveryVersionAcrossReopen) {
  EXPECT_TRUE(store_->WasEmptyAtOpen());
  ASSERT_TRUE(Put(Rec("a", 1, R"({"v":1})")).ok());
  ASSERT_TRUE(Put(Rec("a", 2, R"({"v":2})")).ok());
  Reopen();
  EXPECT_FALSE(store_->WasEmptyAtOpen());
  auto cur = Current("a");
  ASSERT_TRUE(cur.has_value());
  EXPECT_EQ(cur->version, 2);
  EXPECT_EQ(cur->json, R"({"v":2})");
  ASSERT_TRUE(store_
                  ->Read([&](ReadView& v) -> Status {
                    ASSIGN_OR_RETURN(auto v1, v.ReadVersion("Patient", "a", 1));
                    EXPECT_EQ(v1->json, R"({"v":1})");
                    ASSIGN_OR_RETURN(auto missing, v.ReadVersion("Patient", "a", 3));
                    EXPECT_FALSE(missing.has_value());
                    return Status::Ok();
                  })
                  .ok());
  auto stats = store_->Stats();
  EXPECT_EQ(stats->resources, 1);
  EXPECT_EQ(stats->versions, 2);
}

TEST_P(StoreTest, DuplicateVersionIsAConflictAndRollsBack) {
  ASSERT_TRUE(Put(Rec("a", 1, "{}")).ok());
  Status st = store_->Write([&](WriteTxn& txn) -> Status {
    WriteRecord ok = Rec("b", 1, "{}");
    ok.version.last_updated = txn.NextTimestamp();
    RETURN_IF_ERROR(txn.Put(ok));
    WriteRecord dup = Rec("a", 1, "{}");
    dup.version.last_updated = txn.NextTimestamp();
    return txn.Put(dup);
  });
  // PostgreSQL cannot tell a stale caller from one that lost a race to another node, and says
  // "prepare again" to both.
  EXPECT_EQ(st.code(),
            GetParam() == Backend::kSqlite ? StatusCode::kConflict : StatusCode::kAborted)
      << st.ToString();
  EXPECT_FALSE(Current("b").has_value());  // the whole call was undone
}

TEST_P(StoreTest, NestedFailureUndoesOnlyItself) {
  Status st = store_->Write([&](WriteTxn& txn) -> Status {
    WriteRecord a = Rec("a", 1, "{}");
    a.version.last_updated = txn.NextTimestamp();
    RETURN_IF_ERROR(txn.Put(a));
    Status inner = txn.Nested([&](WriteTxn& t) -> Status {
      WriteRecord b = Rec("b", 1, "{}");
      b.version.last_updated = t.NextTimestamp();
      RETURN_IF_ERROR(t.Put(b));
      return Status::Invalid("entry failed");
    });
    EXPECT_FALSE(inner.ok());
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(Current("a").has_value());
  EXPECT_FALSE(Current("b").has_value());
}

TEST_P(StoreTest, TokenSearchFollowsTheCurrentVersion) {
  using K = IndexKind;
  ASSERT_TRUE(Put(Rec("a", 1, "{}", {{"identifier", K::kToken, "sys", "1"}})).ok());
  ASSERT_TRUE(Put(Rec("b", 1, "{}",
                      {{"identifier", K::kToken, "sys", "2"}, {"identifier", K::kToken, "", "1"}}))
                  .ok());
  auto find = [&](std::optional<std::string> system, std::string code) {
    IndexPredicate p;
    p.system = std::move(system);
    p.value = std::move(code);
    return Find("Patient", Clause("identifier", K::kToken, p));
  };
  EXPECT_EQ(find(std::nullopt, "1"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(find("sys", "1"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(find("", "1"), (std::vector<std::string>{"b"}));
  // A new version replaces the index rows; a tombstone removes them.
  ASSERT_TRUE(Put(Rec("a", 2, "{}", {{"identifier", K::kToken, "sys", "9"}})).ok());
  EXPECT_EQ(find("sys", "1"), (std::vector<std::string>{}));
  EXPECT_EQ(find("sys", "9"), (std::vector<std::string>{"a"}));
  WriteRecord del = Rec("a", 3, "");
  del.version.deleted = true;
  ASSERT_TRUE(Put(del).ok());
  EXPECT_EQ(find("sys", "9"), (std::vector<std::string>{}));
}

// The total of a search whose first page holds every match is that page's size, without a
// count statement; any other page still counts. Five matches among seven resources, and one
// resource whose newer version no longer matches.
TEST_P(StoreTest, TotalsCountEveryMatchWhateverThePage) {
  using K = IndexKind;
  for (int i = 0; i < 7; ++i) {
    IndexEntry born{"birthdate", K::kDate};
    born.start = born.end = (7 - i) * 1000;  // later patients were born earlier
    ASSERT_TRUE(Put(Rec("p" + std::to_string(i), 1, "{}",
                        {{"identifier", K::kToken, "sys", i < 5 ? "match" : "other"}, born}))
                    .ok());
  }
  ASSERT_TRUE(Put(Rec("q", 1, "{}", {{"identifier", K::kToken, "sys", "match"}})).ok());
  ASSERT_TRUE(Put(Rec("q", 2, "{}", {{"identifier", K::kToken, "sys", "gone"}})).ok());
  struct Case {
    int64_t count, offset;
    bool after;   // start after the first match's seq
    bool sorted;  // by birthdate, oldest first: p4, p3, p2, p1, p0
    size_t resources;
    bool has_more;
    size_t statements;  // run for the page and the total, as _explain lists them
  };
  const Case cases[] = {
      {10, 0, false, false, 5, false, 1},  // the page holds every match: no count
      {5, 0, false, false, 5, false, 1},   // exactly full
      {4, 0, false, false, 4, true, 2},    // a next page: counted
      {10, 3, false, false, 2, false, 2},  // a later page: counted
      {10, 0, true, false, 4, false, 2},   // after a seq: counted from the start
      // A date sort visits every match: the page's statement counts them too.
      {10, 0, false, true, 5, false, 1},
      {2, 0, false, true, 2, true, 1},
      {2, 2, false, true, 2, true, 1},
      {10, 4, false, true, 1, false, 1},
      {10, 7, false, true, 0, false, 2},  // past the end: no row carries the count
  };
  int64_t first_seq = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("count " + std::to_string(c.count) + " offset " + std::to_string(c.offset) +
                 (c.after ? " after" : "") + (c.sorted ? " sorted" : ""));
    ASSERT_TRUE(store_
                    ->Read([&](ReadView& v) -> Status {
                      SearchQuery q;
                      q.type = "Patient";
                      q.count = c.count;
                      q.offset = c.offset;
                      q.explain = true;
                      IndexPredicate p;
                      p.system = "sys";
                      p.value = "match";
                      q.clauses.push_back(Clause("identifier", K::kToken, p));
                      if (c.after) q.after_seq = first_seq;
                      if (c.sorted) {
                        SortKey k;
                        k.param = "birthdate";
                        k.kind = K::kDate;
                        q.sort.push_back(k);
                      }
                      ASSIGN_OR_RETURN(SearchPage page, v.Search(q));
                      if (!c.after && !c.sorted && c.offset == 0) {
                        first_seq = page.resources.at(0).seq;
                      }
                      EXPECT_EQ(page.total, 5);
                      EXPECT_EQ(page.resources.size(), c.resources);
                      EXPECT_EQ(page.has_more, c.has_more);
                      EXPECT_EQ(page.explained.size(), c.statements);
                      for (size_t i = 0; c.sorted && i < page.resources.size(); ++i) {
                        EXPECT_EQ(page.resources[i].id,
                                  "p" + std::to_string(4 - c.offset - static_cast<int64_t>(i)));
                      }
                      // Paging links need the snapshot: set for all but a lone first page.
                      EXPECT_EQ(page.snapshot_seq.has_value(),
                                page.has_more || c.offset > 0 || c.after);
                      return Status::Ok();
                    })
                    .ok());
  }
}

// SearchBatch gives each search the page Search gives it, whether the search came to one
// statement (batched) or not (a driver chosen by counting, a count after a full page).
// A reference that keys rows to its patient (IndexClause::patient_keyed) beside a code: on
// PostgreSQL the code's rows of that patient drive the search; the answer is the same on both
// stores. Resources keyed to the patient that do not match the reference itself (referring to it
// through another parameter), other patients', superseded and deleted versions stay out.
TEST_P(StoreTest, PatientKeyedReferenceWithACodeFindsThePatientsMatchesOnly) {
  using K = IndexKind;
  auto obs = [&](const std::string& id, int64_t version, const std::string& link,
                 const std::string& patient, const std::string& code) {
    WriteRecord r = Rec(
        id, version, "{}",
        {{link, K::kReference, "Patient", patient}, {"code", K::kToken, "http://loinc.org", code}});
    r.version.type = "Observation";
    r.patient = patient;
    return Put(std::move(r));
  };
  ASSERT_TRUE(obs("o1", 1, "subject", "a", "C").ok());
  ASSERT_TRUE(obs("o2", 1, "subject", "a", "D").ok());
  ASSERT_TRUE(obs("o3", 1, "subject", "b", "C").ok());
  ASSERT_TRUE(obs("o4", 1, "performer", "a", "C").ok());  // keyed to a, no subject
  ASSERT_TRUE(obs("o5", 1, "subject", "a", "C").ok());
  ASSERT_TRUE(obs("o5", 2, "subject", "a", "D").ok());  // no longer code C
  ASSERT_TRUE(obs("o6", 1, "subject", "a", "C").ok());
  ASSERT_TRUE(obs("o7", 1, "subject", "a", "C").ok());
  WriteRecord del = Rec("o6", 2, "");
  del.version.type = "Observation";
  del.version.deleted = true;
  ASSERT_TRUE(Put(std::move(del)).ok());

  IndexPredicate to_a;
  to_a.system = "Patient";
  to_a.value = "a";
  IndexClause subject = Clause("subject", K::kReference, to_a);
  subject.patient_keyed = true;
  IndexPredicate c;
  c.system = "http://loinc.org";
  c.value = "C";
  SearchQuery q;
  q.type = "Observation";
  q.clauses = {subject, Clause("code", K::kToken, c)};
  q.explain = true;
  auto ids = [](const SearchPage& p) {
    std::vector<std::string> out;
    for (const VersionRecord& r : p.resources) out.push_back(r.id);
    return out;
  };
  ASSERT_TRUE(store_
                  ->Read([&](ReadView& v) -> Status {
                    ASSIGN_OR_RETURN(SearchPage all, v.Search(q));
                    EXPECT_EQ(ids(all), (std::vector<std::string>{"o1", "o7"}));
                    EXPECT_EQ(all.total, 2);
                    // Where the store keeps patient keys on its rows, they drive.
                    bool by_patient = false;
                    for (const auto& step : all.explained) {
                      by_patient = by_patient || step.sql.find("patient=") != std::string::npos;
                    }
                    EXPECT_EQ(by_patient, GetParam() == Backend::kPostgres);
                    // Paged: the second page and the total through the same driver.
                    SearchQuery paged = q;
                    paged.count = 1;
                    ASSIGN_OR_RETURN(SearchPage first, v.Search(paged));
                    EXPECT_EQ(ids(first), (std::vector<std::string>{"o1"}));
                    EXPECT_TRUE(first.has_more);
                    EXPECT_EQ(first.total, 2);
                    paged.offset = 1;
                    ASSIGN_OR_RETURN(SearchPage second, v.Search(paged));
                    EXPECT_EQ(ids(second), (std::vector<std::string>{"o7"}));
                    // Another patient's.
                    SearchQuery b = q;
                    b.clauses[0].any_of[0].value = "b";
                    ASSIGN_OR_RETURN(SearchPage of_b, v.Search(b));
                    EXPECT_EQ(ids(of_b), (std::vector<std::string>{"o3"}));
                    return Status::Ok();
                  })
                  .ok());
}

TEST_P(StoreTest, SearchBatchAnswersAsSearchesDo) {
  using K = IndexKind;
  for (int i = 0; i < 9; ++i) {
    IndexEntry born{"birthdate", K::kDate};
    born.start = born.end = (9 - i) * 1000;
    ASSERT_TRUE(Put(Rec("p" + std::to_string(i), 1, "{}",
                        {{"identifier", K::kToken, "sys", i % 3 ? "match" : "other"},
                         {"name", K::kString, "", i < 4 ? "ann" : "bob"},
                         born}))
                    .ok());
  }
  auto token = [&](const std::string& value) {
    IndexPredicate p;
    p.system = "sys";
    p.value = value;
    return Clause("identifier", K::kToken, p);
  };
  std::vector<SearchQuery> queries;
  SearchQuery q;
  q.type = "Patient";
  q.clauses = {token("match")};
  queries.push_back(q);  // one page holds all: one statement
  q.count = 2;
  queries.push_back(q);  // a next page: counted afterwards
  q.count = 0;
  queries.push_back(q);  // the total alone
  q.count = 3;
  q.want_total = false;
  SortKey k;
  k.param = "birthdate";
  k.kind = K::kDate;
  q.sort = {k};
  queries.push_back(q);  // sorted, no total
  q.sort.clear();
  q.want_total = true;
  IndexPredicate ann;
  ann.value = "ann";
  q.clauses.push_back(Clause("name", K::kString, ann));
  queries.push_back(q);  // two clauses of one rank: a driver chosen by counting
  SearchQuery by_id;
  by_id.type = "Patient";
  by_id.ids = {"p2", "p7", "nobody"};
  queries.push_back(by_id);
  SearchQuery none = queries[0];
  none.clauses = {token("absent")};
  queries.push_back(none);
  std::vector<SearchPage> alone, batched;
  ASSERT_TRUE(store_
                  ->Read([&](ReadView& v) -> Status {
                    for (const SearchQuery& each : queries) {
                      ASSIGN_OR_RETURN(SearchPage p, v.Search(each));
                      alone.push_back(std::move(p));
                    }
                    ASSIGN_OR_RETURN(batched, v.SearchBatch(queries));
                    return Status::Ok();
                  })
                  .ok());
  ASSERT_EQ(batched.size(), queries.size());
  auto ids = [](const SearchPage& p) {
    std::vector<std::string> out;
    for (const VersionRecord& v : p.resources) out.push_back(v.id);
    return out;
  };
  const std::vector<std::vector<std::string>> expected = {{"p1", "p2", "p4", "p5", "p7", "p8"},
                                                          {"p1", "p2"},
                                                          {},
                                                          {"p8", "p7", "p5"},
                                                          {"p1", "p2"},
                                                          {"p2", "p7"},
                                                          {}};
  const std::vector<std::optional<int64_t>> totals = {6, 6, 6, std::nullopt, 2, 2, 0};
  for (size_t i = 0; i < queries.size(); ++i) {
    SCOPED_TRACE("query " + std::to_string(i));
    EXPECT_EQ(ids(alone[i]), expected[i]);
    EXPECT_EQ(ids(batched[i]), expected[i]);
    EXPECT_EQ(alone[i].total, totals[i]);
    EXPECT_EQ(batched[i].total, totals[i]);
    EXPECT_EQ(batched[i].has_more, alone[i].has_more);
    EXPECT_EQ(batched[i].snapshot_seq, alone[i].snapshot_seq);
  }
}

TEST_P(StoreTest, HistoryPagesNewestFirst) {
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Put(Rec("a", i, "{}")).ok());
  std::vector<int64_t> seen;
  std::optional<int64_t> cursor;
  do {
    HistoryPage page;
    ASSERT_TRUE(store_
                    ->Read([&](ReadView& v) -> Status {
                      HistoryQuery q;
                      q.type = "Patient";
                      q.id = "a";
                      q.count = 2;
                      q.before_seq = cursor;
                      ASSIGN_OR_RETURN(page, v.History(q));
                      return Status::Ok();
                    })
                    .ok());
    EXPECT_EQ(page.total, 5);
    for (auto& e : page.entries) seen.push_back(e.version);
    cursor = page.next_before_seq;
  } while (cursor);
  EXPECT_EQ(seen, (std::vector<int64_t>{5, 4, 3, 2, 1}));
}

TEST_P(StoreTest, ConcurrentWritersShareCommitsAndStayOrdered) {
  constexpr int kThreads = 16, kPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!Put(Rec("t" + std::to_string(t) + "-" + std::to_string(i), 1, "{}")).ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  auto stats = store_->Stats();
  EXPECT_EQ(stats->versions, kThreads * kPerThread);
  EXPECT_EQ(stats->write_calls, kThreads * kPerThread);
  if (GetParam() == Backend::kSqlite) {
    // Group commit: sixteen writers waiting on the disk share commits.
    EXPECT_LT(stats->commits, stats->write_calls);
  }
  // Timestamps strictly increase with commit order (SQLite: one writer). On PostgreSQL
  // concurrent transactions take their seq and their timestamp in either order; every
  // timestamp is still unique.
  ASSERT_TRUE(store_
                  ->Read([&](ReadView& v) -> Status {
                    HistoryQuery q;
                    q.count = kThreads * kPerThread;
                    ASSIGN_OR_RETURN(HistoryPage page, v.History(q));
                    std::set<int64_t> stamps;
                    for (size_t i = 0; i < page.entries.size(); ++i) {
                      stamps.insert(page.entries[i].last_updated);
                      if (i > 0 && GetParam() == Backend::kSqlite) {
                        EXPECT_GT(page.entries[i - 1].last_updated, page.entries[i].last_updated);
                      }
                    }
                    EXPECT_EQ(stamps.size(), page.entries.size());
                    return Status::Ok();
                  })
                  .ok());
}

// Index rows of a write may be held back until its commit (SQLite sorts a commit group's rows
// before inserting them). Whatever the grouping, a search inside the write sees the write's
// own rows, and the rows of calls and nested transactions that fail vanish with them while
// their neighbours' stay.
TEST_P(StoreTest, IndexRowsFollowTheirWriteThroughSearchesAndRollbacks) {
  using K = IndexKind;
  auto query = [](const std::string& type, const std::string& code) {
    SearchQuery q;
    q.type = type;
    IndexClause clause;
    clause.param = "identifier";
    clause.any_of.emplace_back();
    clause.any_of.back().system = "s";
    clause.any_of.back().value = code;
    q.clauses.push_back(std::move(clause));
    return q;
  };
  auto put = [](WriteTxn& txn, const std::string& type, const std::string& id) {
    WriteRecord r = Rec(id, 1, "{}", {{"identifier", K::kToken, "s", id}});
    r.version.type = type;
    r.version.last_updated = txn.NextTimestamp();
    return txn.Put(r);
  };
  constexpr int kThreads = 8, kPerThread = 25;
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        bool fail = i % 3 == 1;
        Status st = store_->Write([&](WriteTxn& txn) -> Status {
          RETURN_IF_ERROR(put(txn, "Observation", "o" + id));
          RETURN_IF_ERROR(put(txn, "Patient", "p" + id));
          // Sees its own Patient row (and flushes Patient rows held for earlier calls).
          ASSIGN_OR_RETURN(SearchPage own, txn.Search(query("Patient", "p" + id)));
          if (own.resources.size() != 1) unexpected++;
          // A nested transaction that fails takes only its own rows with it.
          Status inner = txn.Nested([&](WriteTxn& n) -> Status {
            RETURN_IF_ERROR(put(n, "Patient", "n" + id));
            ASSIGN_OR_RETURN(SearchPage mine, n.Search(query("Patient", "n" + id)));
            if (mine.resources.size() != 1) unexpected++;
            return Status::Invalid("nested entry fails");
          });
          if (inner.ok()) unexpected++;
          // Unsearched rows of a failed nested transaction are dropped too.
          inner = txn.Nested([&](WriteTxn& n) -> Status {
            RETURN_IF_ERROR(put(n, "Patient", "m" + id));
            return Status::Invalid("nested entry fails");
          });
          if (inner.ok()) unexpected++;
          // Flushes the Encounter rows held for earlier calls of the group inside this call:
          // if this call fails, they must still be written.
          ASSIGN_OR_RETURN(SearchPage none, txn.Search(query("Encounter", "e" + id)));
          if (!none.resources.empty()) unexpected++;
          RETURN_IF_ERROR(put(txn, "Encounter", "e" + id));
          return fail ? Status::Invalid("this call fails") : Status::Ok();
        });
        if (st.ok() == fail) unexpected++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected, 0);
  ASSERT_TRUE(
      store_
          ->Read([&](ReadView& v) -> Status {
            for (int t = 0; t < kThreads; ++t) {
              for (int i = 0; i < kPerThread; ++i) {
                std::string id = std::to_string(t) + "-" + std::to_string(i);
                size_t want = i % 3 == 1 ? 0 : 1;
                for (const auto& [type, prefix] : std::vector<std::pair<std::string, std::string>>{
                         {"Observation", "o"}, {"Patient", "p"}, {"Encounter", "e"}}) {
                  ASSIGN_OR_RETURN(SearchPage page, v.Search(query(type, prefix + id)));
                  EXPECT_EQ(page.resources.size(), want) << type << " " << prefix + id;
                }
                for (const char* prefix : {"n", "m"}) {
                  ASSIGN_OR_RETURN(SearchPage nested, v.Search(query("Patient", prefix + id)));
                  EXPECT_TRUE(nested.resources.empty()) << prefix << id;
                }
              }
            }
            return Status::Ok();
          })
          .ok());
  EXPECT_EQ(OrphanIndexRows(), 0);
}

TEST_P(StoreTest, ReadsByIdSeeEveryCommittedVersionAndNothingRolledBack) {
  auto read_one = [&](const std::string& id) {
    std::optional<VersionRecord> out;
    EXPECT_TRUE(store_
                    ->ReadStatement([&](ReadView& v) -> Status {
                      ASSIGN_OR_RETURN(out, v.ReadCurrent("Patient", id));
                      return Status::Ok();
                    })
                    .ok());
    return out;
  };
  ASSERT_TRUE(Put(Rec("a", 1, R"({"v":1})")).ok());
  EXPECT_EQ(read_one("a")->json, R"({"v":1})");  // fills the cache
  EXPECT_EQ(read_one("a")->json, R"({"v":1})");  // served from it
  ASSERT_TRUE(Put(Rec("a", 2, R"({"v":2})")).ok());
  EXPECT_EQ(read_one("a")->version, 2);  // the writer dropped v1 before acknowledging v2
  // A nested transaction that fails, and a whole call that fails, leave no trace.
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> Status {
                    return txn.Nested([&](WriteTxn& t) -> Status {
                                WriteRecord r = Rec("a", 3, R"({"v":"rolled back"})");
                                r.version.last_updated = t.NextTimestamp();
                                RETURN_IF_ERROR(t.Put(r));
                                return Status::Invalid("no");
                              }).ok()
                               ? Status::Internal("expected failure")
                               : Status::Ok();
                  })
                  .ok());
  EXPECT_FALSE(store_
                   ->Write([&](WriteTxn& txn) -> Status {
                     WriteRecord r = Rec("a", 3, R"({"v":"failed"})");
                     r.version.last_updated = txn.NextTimestamp();
                     RETURN_IF_ERROR(txn.Put(r));
                     return Status::Invalid("fail the call");
                   })
                   .ok());
  EXPECT_EQ(read_one("a")->json, R"({"v":2})");
  EXPECT_FALSE(read_one("missing").has_value());
  WriteRecord del = Rec("a", 3, "");
  del.version.deleted = true;
  ASSERT_TRUE(Put(del).ok());
  EXPECT_TRUE(read_one("a")->deleted);
  // Many concurrent readers and writers: a reader never goes back to an older version.
  std::atomic<bool> stop{false};
  std::atomic<int> regressions{0};
  std::thread writer([&] {
    for (int v = 4; v < 200; ++v) ASSERT_TRUE(Put(Rec("a", v, "{}")).ok());
    stop = true;
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (!stop) {
        int64_t v = read_one("a")->version;
        if (v < last) regressions++;
        last = v;
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(regressions, 0);
  EXPECT_EQ(read_one("a")->version, 199);
}

TEST_P(SqliteStoreTest, OneProcessPerStore) {
  SqliteOptions o;
  o.dir = place_->dir();
  auto second = OpenSqliteStore(o);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  store_->Close();
  EXPECT_TRUE(OpenSqliteStore(o).ok());  // free again once closed
}

// The checkpoint interval bounds the WAL: a short one keeps it near one commit's pages, a bulk
// load's long one lets it grow with what was written (pages are copied into the database once
// per interval, not once per commit).
TEST_P(SqliteStoreTest, CheckpointIntervalBoundsTheWal) {
  store_->Close();
  auto wal_after_writes = [&](int checkpoint_pages) -> int64_t {
    TestStore place(Backend::kSqlite);
    SqliteOptions o;
    o.dir = place.dir();
    o.checkpoint_pages = checkpoint_pages;
    auto s = OpenSqliteStore(o);
    if (!s.ok()) return -1;
    std::string body = "{\"pad\":\"" + std::string(8000, 'x') + "\"}";
    for (int i = 0; i < 200; ++i) {
      Status st = (*s)->Write([&](WriteTxn& txn) {
        WriteRecord r = Rec("w" + std::to_string(i), 1, body);
        r.version.last_updated = txn.NextTimestamp();
        return txn.Put(r);
      });
      if (!st.ok()) return -1;
    }
    int64_t size = static_cast<int64_t>(std::filesystem::file_size(o.dir + "/taproot.db-wal"));
    (*s)->Close();
    return size;
  };
  int64_t short_interval = wal_after_writes(8);
  int64_t bulk = wal_after_writes(SqliteOptions::kBulkCheckpointPages);
  EXPECT_GT(short_interval, 0);
  EXPECT_LT(short_interval, 256 * 1024);
  EXPECT_GT(bulk, 4 * short_interval);
}

// A parameter first written by a call that then fails (or by a nested transaction that fails) is
// still searchable after a restart once a later call writes it. SQLite names each (type,
// param) pair by a number stored with the rows (idx_keys): the rolled-back call took that
// number's row with it, so the later call must store it again.
TEST_P(StoreTest, ParametersFirstWrittenByRolledBackCallsAreFoundAfterReopen) {
  using K = IndexKind;
  Status failed = store_->Write([&](WriteTxn& txn) -> Status {
    WriteRecord r = Rec("gone", 1, "{}", {{"fresh", K::kToken, "sys", "1"}});
    r.version.last_updated = txn.NextTimestamp();
    RETURN_IF_ERROR(txn.Put(r));
    return Status::Invalid("the call fails after its write");
  });
  ASSERT_EQ(failed.code(), StatusCode::kInvalid);
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> Status {
                    Status inner = txn.Nested([&](WriteTxn& t) -> Status {
                      WriteRecord r = Rec("gone2", 1, "{}", {{"nested", K::kToken, "sys", "2"}});
                      r.version.last_updated = t.NextTimestamp();
                      RETURN_IF_ERROR(t.Put(r));
                      // The pair's row must be in the B-tree before the rollback for the test
                      // to mean anything: a search flushes the held rows.
                      SearchQuery q;
                      q.type = "Patient";
                      RETURN_IF_ERROR(t.Search(q).status());
                      return Status::Invalid("the nested transaction fails");
                    });
                    EXPECT_EQ(inner.code(), StatusCode::kInvalid);
                    for (const auto& [id, param, code] :
                         {std::tuple{"kept", "fresh", "1"}, std::tuple{"kept2", "nested", "2"}}) {
                      WriteRecord r = Rec(id, 1, "{}", {{param, K::kToken, "sys", code}});
                      r.version.last_updated = txn.NextTimestamp();
                      RETURN_IF_ERROR(txn.Put(r));
                    }
                    return Status::Ok();
                  })
                  .ok());
  Reopen();
  auto find = [&](const std::string& param, const std::string& code) {
    IndexPredicate p;
    p.value = code;
    return Find("Patient", Clause(param, K::kToken, p));
  };
  EXPECT_EQ(find("fresh", "1"), (std::vector<std::string>{"kept"}));
  EXPECT_EQ(find("nested", "2"), (std::vector<std::string>{"kept2"}));
  EXPECT_EQ(OrphanIndexRows(), 0);
}

// A store written by the previous schema (version 3: index rows carry the type and parameter
// names) is upgraded in place when opened: every row is found as before, the superseded
// version's rows still do not match, and new writes go into the new tables.
TEST_P(SqliteStoreTest, UpgradesAVersion3Store) {
  store_->Close();
  store_.reset();
  std::filesystem::remove_all(place_->dir());
  std::filesystem::create_directories(place_->dir());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((place_->dir() + "/taproot.db").c_str(), &db), SQLITE_OK);
  auto exec = [&](const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << (err ? err : "") << " in " << sql;
    sqlite3_free(err);
  };
  // The version 3 tables, as that schema wrote them.
  exec(R"sql(
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE versions(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,
      version INTEGER NOT NULL, ts INTEGER NOT NULL, deleted INTEGER NOT NULL,
      method TEXT NOT NULL, body BLOB, UNIQUE(type, id, version));
    CREATE INDEX versions_by_type ON versions(type, seq);
    CREATE INDEX versions_by_ts ON versions(ts);
    CREATE TABLE current(type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
      seq INTEGER NOT NULL, deleted INTEGER NOT NULL, ts INTEGER NOT NULL,
      PRIMARY KEY(type, id)) WITHOUT ROWID;
    CREATE TABLE idx_token(type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL,
      system TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(type, param, code, system, seq))
      WITHOUT ROWID;
    CREATE TABLE idx_string(type TEXT NOT NULL, param TEXT NOT NULL, norm TEXT NOT NULL,
      exact TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(type, param, norm, exact, seq))
      WITHOUT ROWID;
    CREATE TABLE idx_date(type TEXT NOT NULL, param TEXT NOT NULL, start INTEGER NOT NULL,
      end INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(type, param, start, end, seq))
      WITHOUT ROWID;
    CREATE INDEX idx_date_by_seq ON idx_date(seq);
    CREATE TABLE idx_number(type TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL,
      seq INTEGER NOT NULL, PRIMARY KEY(type, param, value, seq)) WITHOUT ROWID;
    CREATE TABLE idx_quantity(type TEXT NOT NULL, param TEXT NOT NULL, code TEXT NOT NULL,
      system TEXT NOT NULL, value REAL NOT NULL, seq INTEGER NOT NULL,
      PRIMARY KEY(type, param, code, system, value, seq)) WITHOUT ROWID;
    CREATE TABLE idx_ref(type TEXT NOT NULL, param TEXT NOT NULL, target TEXT NOT NULL,
      target_type TEXT NOT NULL, seq INTEGER NOT NULL,
      PRIMARY KEY(type, param, target, target_type, seq)) WITHOUT ROWID;
    CREATE VIRTUAL TABLE idx_fts USING fts5(type UNINDEXED, param UNINDEXED, seq UNINDEXED,
      body, tokenize='unicode61 remove_diacritics 2');
    CREATE TABLE idx_uri(type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL,
      seq INTEGER NOT NULL, PRIMARY KEY(type, param, uri, seq)) WITHOUT ROWID;
    CREATE TABLE superseded(seq INTEGER PRIMARY KEY, by_seq INTEGER NOT NULL);
    CREATE TABLE requests(request_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
      ts INTEGER NOT NULL, status INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL);
    INSERT INTO meta VALUES('schema_version', '3');
    -- Patient p1 in two versions (seq 1, then 3), Observation o1 (seq 2), uncompressed bodies
    -- left out (NULL): the test reads ids only.
    INSERT INTO versions VALUES(1, 'Patient', 'p1', 1, 10, 0, 'POST', NULL);
    INSERT INTO versions VALUES(2, 'Observation', 'o1', 1, 11, 0, 'POST', NULL);
    INSERT INTO versions VALUES(3, 'Patient', 'p1', 2, 12, 0, 'PUT', NULL);
    INSERT INTO current VALUES('Patient', 'p1', 2, 3, 0, 12);
    INSERT INTO current VALUES('Observation', 'o1', 1, 2, 0, 11);
    INSERT INTO superseded VALUES(1, 3);
    INSERT INTO idx_token VALUES('Patient', 'identifier', '123', 'sys', 1);
    INSERT INTO idx_token VALUES('Patient', 'identifier', '456', 'sys', 3);
    INSERT INTO idx_token VALUES('Observation', 'code', '8867-4', 'http://loinc.org', 2);
    INSERT INTO idx_string VALUES('Patient', 'name', 'smith', 'Smith', 3);
    INSERT INTO idx_date VALUES('Patient', 'birthdate', 100, 199, 3);
    INSERT INTO idx_number VALUES('Observation', 'probability', 0.5, 2);
    INSERT INTO idx_quantity VALUES('Observation', 'value-quantity', 'mg', 'http://unitsofmeasure.org', 5.0, 2);
    INSERT INTO idx_ref VALUES('Observation', 'subject', 'p1', 'Patient', 2);
    INSERT INTO idx_uri VALUES('Patient', 'profile', 'http://example.org/p', 3);
  )sql");
  sqlite3_close(db);
  Reopen();

  CheckUpgradedRows();
  EXPECT_EQ(OrphanIndexRows(), 0);
  // No table of the old layout is left.
  store_->Close();
  ASSERT_EQ(sqlite3_open((place_->dir() + "/taproot.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT (SELECT count(*) FROM sqlite_master WHERE name LIKE "
                               "'old_%'), (SELECT value FROM meta WHERE key='schema_version')",
                               -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(s, 0), 0);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 1))), "4");
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// Migration 2 numbers the (type, param) pairs of a database written by migration 1's schema.
TEST_P(PostgresStoreTest, UpgradesSchema1) {
  store_->Close();
  store_.reset();
  auto admin = pg::Conn::Open(place_->url());
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  // An empty database in schema 1, as a build of that schema would leave it.
  ASSERT_TRUE((*admin)->Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public").ok());
  PostgresOptions old;
  old.url = place_->url();
  old.schema_version = 1;
  {
    auto s = OpenPostgresStore(old);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
  }
  // The same store as UpgradesAVersion3Store's, in schema 1's tables (each row with its
  // patient key: p1 for everything in p1's compartment).
  Status st = (*admin)->Exec(R"sql(
    INSERT INTO versions(type, id, version, ts, deleted, method, body, patient) VALUES
      ('Patient', 'p1', 1, 10, 0, 'POST', NULL, 'p1'),
      ('Observation', 'o1', 1, 11, 0, 'POST', NULL, 'p1'),
      ('Patient', 'p1', 2, 12, 0, 'PUT', NULL, 'p1');
    INSERT INTO current VALUES('Patient', 'p1', 2, 3, 0, 12, 'p1');
    INSERT INTO current VALUES('Observation', 'o1', 1, 2, 0, 11, 'p1');
    INSERT INTO superseded VALUES(1, 3, 'p1');
    INSERT INTO idx_token VALUES('Patient', 'identifier', '123', 'sys', 1, 'p1');
    INSERT INTO idx_token VALUES('Patient', 'identifier', '456', 'sys', 3, 'p1');
    INSERT INTO idx_token VALUES('Observation', 'code', '8867-4', 'http://loinc.org', 2, 'p1');
    INSERT INTO idx_string VALUES('Patient', 'name', 'smith', 'Smith', 3, 'p1');
    INSERT INTO idx_date VALUES('Patient', 'birthdate', 100, 199, 3, 'p1');
    INSERT INTO idx_number VALUES('Observation', 'probability', 0.5, 2, 'p1');
    INSERT INTO idx_quantity VALUES('Observation', 'value-quantity', 'mg',
      'http://unitsofmeasure.org', 5.0, 2, 'p1');
    INSERT INTO idx_ref VALUES('Observation', 'subject', 'p1', 'Patient', 2, 'p1');
    INSERT INTO idx_uri VALUES('Patient', 'profile', 'http://example.org/p', 3, 'p1');
  )sql");
  ASSERT_TRUE(st.ok()) << st.ToString();
  Reopen();
  CheckUpgradedRows();
  EXPECT_EQ(OrphanIndexRows(), 0);
  // Every pair numbered once, no copy table left, the schema at migration 3 (with the token
  // rows' index by patient), and the patient keys carried over.
  auto r = (*admin)->Query(
      "SELECT (SELECT count(*) FROM idx_keys), (SELECT count(DISTINCT tp) FROM idx_keys), "
      "(SELECT count(*) FROM pg_tables WHERE tablename ~ '^idx_.*_n$'), "
      "(SELECT max(version) FROM taproot_migrations), "
      "(SELECT count(*) FROM idx_ref WHERE patient='p1'), "
      "(SELECT count(*) FROM pg_indexes WHERE indexname='idx_token_by_patient')");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->Int(0, 0), 8);  // the eight pairs above (p2's identifier is one of them)
  EXPECT_EQ(r->Int(0, 1), r->Int(0, 0));
  EXPECT_EQ(r->Int(0, 2), 0);
  EXPECT_EQ(r->Int(0, 3), 3);
  EXPECT_EQ(r->Int(0, 4), 1);
  EXPECT_EQ(r->Int(0, 5), 1);
}

// Two stores on one database (two nodes) number the same new (type, param) pairs at the same
// time: each pair gets one number, and each node finds every row the other wrote.
TEST_P(PostgresStoreTest, TwoNodesNumberNewPairsAlike) {
  auto other = place_->Open();
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  std::vector<Store*> nodes = {store_.get(), other->get()};
  constexpr int kThreads = 8, kPerThread = 10, kParams = 5;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store* node = nodes[t % 2];
      for (int i = 0; i < kPerThread; ++i) {
        WriteRecord r = Rec("t" + std::to_string(t) + "-" + std::to_string(i), 1, "{}",
                            {{"p" + std::to_string(i % kParams), IndexKind::kToken, "s", "v"}});
        Status st = node->Write([&](WriteTxn& txn) {
          r.version.last_updated = txn.NextTimestamp();
          return txn.Put(r);
        });
        if (!st.ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (Store* node : nodes) {
    for (int k = 0; k < kParams; ++k) {
      SCOPED_TRACE("p" + std::to_string(k));
      int64_t found = -1;
      ASSERT_TRUE(node->Read([&](ReadView& v) -> Status {
                        SearchQuery q;
                        q.type = "Patient";
                        q.count = 1000;
                        IndexPredicate p;
                        p.system = "s";
                        p.value = "v";
                        q.clauses.push_back(Clause("p" + std::to_string(k), IndexKind::kToken, p));
                        ASSIGN_OR_RETURN(SearchPage page, v.Search(q));
                        found = static_cast<int64_t>(page.resources.size());
                        return Status::Ok();
                      })
                      .ok());
      EXPECT_EQ(found, kThreads * kPerThread / kParams);
    }
  }
  auto conn = pg::Conn::Open(place_->url());
  ASSERT_TRUE(conn.ok());
  auto r = (*conn)->Query("SELECT count(*), count(DISTINCT tp) FROM idx_keys");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Int(0, 0), kParams);
  EXPECT_EQ(r->Int(0, 1), kParams);
}

// The pipelined pair of statements a read snapshot begins with: both run, a failure of either
// is reported, and the connection stays usable afterwards.
// A read's COMMIT waits for its connection's next round trip (pg::Conn::DeferCommit). The next
// user of the connection must still begin afresh: a write is not run inside the read's read-only
// transaction, and the read after it sees what it wrote. A connection left idle has its
// transaction ended by the pool soon after, so no snapshot holds back vacuum.
TEST_P(PostgresStoreTest, DeferredCommitsEndEachReadsSnapshot) {
  ASSERT_TRUE(Put(Rec("a", 1, R"({"v":1})")).ok());
  for (int64_t v = 2; v <= 4; ++v) {
    auto cur = Current("a");  // a snapshot read, on the connection the write below takes next
    ASSERT_TRUE(cur.has_value());
    EXPECT_EQ(cur->version, v - 1);
    Status put = Put(Rec("a", v, R"({"v":2})"));
    ASSERT_TRUE(put.ok()) << put.ToString();
  }
  auto cur = Current("a");
  ASSERT_TRUE(cur.has_value());
  EXPECT_EQ(cur->version, 4);
  auto admin = pg::Conn::Open(place_->url());
  ASSERT_TRUE(admin.ok());
  int64_t open = -1;
  for (int i = 0; i < 300 && open != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto r = (*admin)->Query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state "
        "LIKE 'idle in transaction%'");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    open = r->Int(0, 0);
  }
  EXPECT_EQ(open, 0) << "a read's transaction was left open";
}

TEST_P(PostgresStoreTest, PipelinedStatementsReportFailuresAndLeaveTheConnectionUsable) {
  auto conn = pg::Conn::Open(place_->url());
  ASSERT_TRUE(conn.ok());
  pg::Conn& c = **conn;
  // A statement, then a prepared one, in one pipeline: the prepared one's rows.
  auto after = [&](const std::string& first, const std::string& sql,
                   const pg::Params& params = {}) -> Result<pg::Rows> {
    ASSIGN_OR_RETURN(std::vector<pg::Rows> rows, c.Pipeline({first}, {{sql, params}}));
    return std::move(rows.back());
  };
  auto r = after("BEGIN", "SELECT $1::bigint + 1", pg::Params().Int(41));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->Int(0, 0), 42);
  EXPECT_FALSE(c.Idle());  // BEGIN ran
  ASSERT_TRUE(c.Exec("ROLLBACK").ok());
  // Prepared already: the second call sends no PREPARE.
  r = after("BEGIN", "SELECT $1::bigint + 1", pg::Params().Int(1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->Int(0, 0), 2);
  ASSERT_TRUE(c.Exec("ROLLBACK").ok());
  // The first statement fails: the second is skipped, the error is the first one's.
  r = after("SELECT nonsense_column FROM versions", "SELECT 3");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nonsense_column"), std::string::npos)
      << r.status().ToString();
  // The second fails (division by zero at run time).
  r = after("BEGIN", "SELECT 1 / $1::integer", pg::Params().Int(0));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(c.InFailedTransaction());
  ASSERT_TRUE(c.Exec("ROLLBACK").ok());
  EXPECT_TRUE(c.Healthy());
  // Statements after the prepared ones (a write's NOTIFY, then its COMMIT): run in order, and
  // skipped after a failure, leaving the transaction to roll back.
  ASSERT_TRUE(c.Exec("CREATE TEMP TABLE t(v integer)").ok());
  const std::string insert = "INSERT INTO t VALUES ($1::integer) RETURNING v";
  pg::Params one, zero;
  one.Int(1);
  zero.Int(0);
  auto rows = c.Pipeline({"BEGIN"}, {{insert, one}}, {"COMMIT"});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->at(0).Int(0, 0), 1);
  EXPECT_TRUE(c.Idle());  // committed
  const std::string divide = "INSERT INTO t VALUES (1 / $1::integer)";
  rows = c.Pipeline({"BEGIN"}, {{insert, one}, {divide, zero}}, {"COMMIT"});
  EXPECT_FALSE(rows.ok());
  EXPECT_TRUE(c.InFailedTransaction());  // the COMMIT was skipped
  ASSERT_TRUE(c.Exec("ROLLBACK").ok());
  auto count = c.Prepared("SELECT count(*) FROM t");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(count->Int(0, 0), 1);
  auto again = c.Prepared("SELECT 7");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->Int(0, 0), 7);
}

TEST_P(StoreTest, ClosedStoreRefusesWork) {
  store_->Close();
  EXPECT_FALSE(store_->IsOpen());
  EXPECT_EQ(Put(Rec("a", 1, "{}")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(store_->Read([](ReadView&) { return Status::Ok(); }).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace taproot::store
