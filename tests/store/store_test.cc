#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

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
    r.index = std::move(index);
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

  // Rows of the index tables whose version does not exist: left behind by a rolled-back write.
  // Read straight from the database, since searches join each row to its version and would not
  // show them, but a later version given the same seq would.
  int64_t OrphanIndexRows() {
    std::string sql;
    for (const char* table : {"idx_token", "idx_string", "idx_date", "idx_ref"}) {
      sql += std::string(sql.empty() ? "SELECT " : " + ") + "(SELECT count(*) FROM " + table +
             " t WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.seq=t.seq AND v.type=t.type))";
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
    std::vector<std::string> ids;
    EXPECT_TRUE(store_
                    ->Read([&](ReadView& v) -> Status {
                      SearchQuery q;
                      q.type = "Patient";
                      IndexClause clause;
                      clause.param = "identifier";
                      clause.any_of.emplace_back();
                      clause.any_of.back().system = system;
                      clause.any_of.back().value = code;
                      q.clauses.push_back(std::move(clause));
                      ASSIGN_OR_RETURN(SearchPage page, v.Search(q));
                      for (auto& r : page.resources) ids.push_back(r.id);
                      EXPECT_EQ(*page.total, static_cast<int64_t>(ids.size()));
                      return Status::Ok();
                    })
                    .ok());
    return ids;
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

TEST_P(StoreTest, ClosedStoreRefusesWork) {
  store_->Close();
  EXPECT_FALSE(store_->IsOpen());
  EXPECT_EQ(Put(Rec("a", 1, "{}")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(store_->Read([](ReadView&) { return Status::Ok(); }).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace taproot::store
