// Stores for tests that run against both backends: SQLite in a fresh temporary directory, or
// PostgreSQL in a fresh database of the test cluster that ctest starts (the pg_cluster fixture,
// scripts/pg-test-cluster). Each TestStore is its own place; the destructor removes it.
//
// The cluster's URL comes from $TAPROOT_TEST_POSTGRES, or the file the fixture writes. Without
// either, PostgreSQL tests fail with a message saying how to start one: never skipped.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "common/ids.h"
#include "store/postgres/pg.h"
#include "store/store.h"

namespace taproot::testing {

enum class Backend { kSqlite, kPostgres };

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

// The test cluster's URL (to its `postgres` database), or empty with `why` set.
inline std::string TestClusterUrl(std::string* why) {
  if (const char* env = std::getenv("TAPROOT_TEST_POSTGRES"); env && *env) return env;
  std::ifstream in(std::string(TAPROOT_PGTEST_DIR) + "/url");
  std::string url;
  if (in >> url) return url;
  *why =
      "no PostgreSQL test cluster: run the tests with ctest (its pg_cluster fixture starts "
      "one), or `scripts/pg-test-cluster start " TAPROOT_PGTEST_DIR
      "`, or set TAPROOT_TEST_POSTGRES";
  return {};
}

class TestStore {
 public:
  explicit TestStore(Backend backend) : backend_(backend) {
    std::string tag = NewUuid();
    tag.erase(std::remove(tag.begin(), tag.end(), '-'), tag.end());
    if (backend_ == Backend::kSqlite) {
      dir_ = (std::filesystem::temp_directory_path() / ("taproot-test-" + tag)).string();
      return;
    }
    admin_url_ = TestClusterUrl(&error_);
    if (admin_url_.empty()) return;
    database_ = "t_" + tag;
    auto admin = store::pg::Conn::Open(admin_url_);
    if (!admin.ok()) {
      error_ = admin.status().ToString();
      return;
    }
    Status st = (*admin)->Exec("CREATE DATABASE " + database_);
    if (!st.ok()) error_ = st.ToString();
    url_ = admin_url_.substr(0, admin_url_.rfind('/') + 1) + database_;
  }

  ~TestStore() {
    if (!database_.empty()) {
      auto admin = store::pg::Conn::Open(admin_url_);
      if (admin.ok())
        (void)(*admin)->Exec("DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)");
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Opens the store (again: every call opens the same database or directory).
  Result<std::unique_ptr<store::Store>> Open(int connections = 8) const {
    if (!error_.empty()) return Status::Unavailable(error_);
    if (backend_ == Backend::kSqlite) {
      store::SqliteOptions o;
      o.dir = dir_;
      return store::OpenSqliteStore(o);
    }
    store::PostgresOptions o;
    o.url = url_;
    o.connections = connections;
    return store::OpenPostgresStore(o);
  }

  Backend backend() const { return backend_; }
  // What `taproot serve` and `taproot import` take to open this store.
  std::vector<std::string> ServeArgs() const {
    if (backend_ == Backend::kSqlite) return {"--data", dir_};
    return {"--store", "postgres", "--postgres", url_};
  }
  const std::string& dir() const { return dir_; }
  const std::string& url() const { return url_; }

 private:
  Backend backend_;
  std::string dir_, admin_url_, database_, url_, error_;
};

}  // namespace taproot::testing
