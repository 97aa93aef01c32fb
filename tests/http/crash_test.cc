// Durability: kill -9 the server in the middle of a stream of writes. Every write that got a 2xx
// must be there after restart, and the database must open without repair.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "common/json.h"
#include "http/client.h"
#include "test_server.h"

namespace taproot {
namespace {

using testing::TestServer;

struct Ack {
  std::string id;
  int64_t version;
};

// Streams PUTs from 8 clients until `stop_server` returns, then returns what was acknowledged.
std::vector<Ack> WriteUntil(TestServer& server, const std::function<void()>& stop_server) {
  std::mutex mu;
  std::vector<Ack> acked;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      http::Client c(server.base());
      for (int i = 0; !stop; ++i) {
        // Half creates of new resources, half updates of a per-thread resource.
        std::string id =
            i % 2 ? "w" + std::to_string(t) + "-" + std::to_string(i) : "hot" + std::to_string(t);
        auto r = c.Send("PUT", "/fhir/Patient/" + id,
                        R"({"resourceType":"Patient","id":")" + id + R"("})");
        if (!r.ok()) break;  // the server is gone
        if (r->status == 200 || r->status == 201) {
          std::string etag = r->Header("ETag");  // W/"n"
          int64_t v = std::stoll(etag.substr(3, etag.size() - 4));
          std::lock_guard lock(mu);
          acked.push_back({id, v});
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  stop_server();
  stop = true;
  for (auto& w : writers) w.join();
  return acked;
}

size_t MissingAfterRestart(TestServer& server, const std::vector<Ack>& acked) {
  http::Client c(server.base());
  size_t missing = 0;
  for (const Ack& a : acked) {
    auto r = c.Send("GET", "/fhir/Patient/" + a.id + "/_history/" + std::to_string(a.version));
    if (!r.ok() || r->status != 200) ++missing;
  }
  return missing;
}

TEST(CrashTest, AcknowledgedWritesSurviveKill9) {
  TestServer server;
  ASSERT_TRUE(server.Start()) << server.log();
  std::vector<Ack> acked = WriteUntil(server, [&] { server.Kill(); });
  ASSERT_GT(acked.size(), 50u);

  // The database opens and passes SQLite's integrity check without any repair step.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((server.data_dir() + "/taproot.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);

  ASSERT_TRUE(server.Start()) << server.log();
  EXPECT_EQ(MissingAfterRestart(server, acked), 0u) << "of " << acked.size() << " acknowledged";
}

TEST(CrashTest, SigtermUnderLoadDrainsAndLosesNothing) {
  TestServer server;
  ASSERT_TRUE(server.Start()) << server.log();
  int exit_code = -1;
  std::vector<Ack> acked = WriteUntil(server, [&] { exit_code = server.Stop(); });
  EXPECT_EQ(exit_code, 0) << server.log();
  ASSERT_GT(acked.size(), 50u);
  EXPECT_NE(server.log().find("stopped cleanly"), std::string::npos);
  ASSERT_TRUE(server.Start()) << server.log();
  EXPECT_EQ(MissingAfterRestart(server, acked), 0u) << "of " << acked.size() << " acknowledged";
}

}  // namespace
}  // namespace taproot
