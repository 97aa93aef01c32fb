// Two `taproot serve` processes on one PostgreSQL database, written to at the same time: no lost
// update, no duplicate conditional create, version numbers dense and ordered per resource.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/json.h"
#include "http/client.h"
#include "store/test_stores.h"
#include "test_server.h"

namespace taproot {
namespace {

using testing::Backend;
using testing::TestServer;
using testing::TestStore;

class TwoNodesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    place_ = std::make_unique<TestStore>(Backend::kPostgres);
    ASSERT_FALSE(place_->url().empty()) << "no PostgreSQL test database";
    for (auto& node : nodes_) {
      node = std::make_unique<TestServer>(
          std::string(), std::vector<std::string>{"--store", "postgres", "--postgres",
                                                  place_->url(), "--no-access-log"});
      ASSERT_TRUE(node->Start()) << node->log();
    }
  }
  std::string Base(int i) const { return nodes_[i % 2]->base(); }

  std::unique_ptr<TestStore> place_;
  std::unique_ptr<TestServer> nodes_[2];
};

const http::Headers kJson = {{"Content-Type", "application/fhir+json"}};

TEST_F(TwoNodesTest, OptimisticIncrementsAcrossNodesLoseNothing) {
  http::Client seed(Base(0));
  auto created =
      seed.Send("PUT", "/fhir/Patient/counter",
                R"({"resourceType":"Patient","id":"counter","multipleBirthInteger":0})", kJson);
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->status, 201) << created->body;
  constexpr int kThreads = 8, kEach = 15;
  std::atomic<int> errors{0}, retries{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      http::Client c(Base(t));
      for (int i = 0; i < kEach; ++i) {
        for (int attempt = 0;; ++attempt) {
          if (attempt > 200) {
            errors++;
            break;
          }
          auto got = c.Send("GET", "/fhir/Patient/counter");
          if (!got.ok() || got->status != 200) {
            errors++;
            break;
          }
          json::value p = *ParseJson(got->body);
          int64_t n = p.at("multipleBirthInteger").as_int64();
          p.as_object()["multipleBirthInteger"] = n + 1;
          http::Headers h = kJson;
          h.emplace_back("If-Match", got->Header("etag"));
          auto put = c.Send("PUT", "/fhir/Patient/counter", json::serialize(p), h);
          if (put.ok() && put->status == 200) break;
          if (put.ok() && (put->status == 412 || put->status == 409)) {
            retries++;
            continue;  // someone else incremented first: read again
          }
          errors++;
          break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 0);
  auto last = seed.Send("GET", "/fhir/Patient/counter");
  json::value p = *ParseJson(last->body);
  EXPECT_EQ(p.at("multipleBirthInteger").as_int64(), kThreads * kEach);
  EXPECT_EQ(p.at("meta").at("versionId").as_string(), std::to_string(kThreads * kEach + 1));
  // The history holds every version exactly once, 1..N, newest first.
  auto hist = seed.Send("GET", "/fhir/Patient/counter/_history?_count=1000");
  json::value h = *ParseJson(hist->body);
  auto& entries = h.at("entry").as_array();
  ASSERT_EQ(entries.size(), static_cast<size_t>(kThreads * kEach + 1));
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].at("resource").at("meta").at("versionId").as_string(),
              std::to_string(entries.size() - i));
  }
  std::printf("increments: %d, retried after a concurrent write: %d\n", kThreads * kEach,
              retries.load());
}

TEST_F(TwoNodesTest, BlindUpdatesGetDenseVersionsAndConditionalCreatesMakeOne) {
  constexpr int kThreads = 8, kEach = 10, kIdentifiers = 5;
  std::atomic<int> errors{0};
  std::mutex mu;
  std::multiset<std::string> versions;  // versionId of every acknowledged update
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      http::Client c(Base(t));
      for (int i = 0; i < kEach; ++i) {
        std::string body = R"({"resourceType":"Patient","id":"shared","gender":")" +
                           std::string(t % 2 ? "male" : "female") + "\"}";
        auto put = c.Send("PUT", "/fhir/Patient/shared", body, kJson);
        if (!put.ok() || (put->status != 200 && put->status != 201)) {
          errors++;
          continue;
        }
        std::lock_guard lock(mu);
        versions.insert(std::string(ParseJson(put->body)->at("meta").at("versionId").as_string()));
      }
      for (int k = 0; k < kIdentifiers; ++k) {
        http::Headers h = kJson;
        h.emplace_back("If-None-Exist", "identifier=urn:test|same-" + std::to_string(k));
        auto post = c.Send("POST", "/fhir/Patient",
                           R"({"resourceType":"Patient","identifier":[{"system":"urn:test",)"
                           R"("value":"same-)" +
                               std::to_string(k) + "\"}]}",
                           h);
        if (!post.ok() || (post->status != 200 && post->status != 201)) errors++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 0);
  // Every acknowledged update got its own version number, and together they are 1..N.
  ASSERT_EQ(versions.size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::string> distinct(versions.begin(), versions.end());
  EXPECT_EQ(distinct.size(), versions.size());
  for (int v = 1; v <= kThreads * kEach; ++v) EXPECT_TRUE(distinct.count(std::to_string(v))) << v;
  http::Client c(Base(1));
  for (int k = 0; k < kIdentifiers; ++k) {
    auto found = c.Send(
        "GET", "/fhir/Patient?identifier=urn:test|same-" + std::to_string(k) + "&_summary=count");
    EXPECT_EQ(ParseJson(found->body)->at("total").as_int64(), 1) << k;
  }
}

}  // namespace
}  // namespace taproot

namespace taproot {
namespace {

// Each node caches current versions for reads by id; a write on one node shows on the other
// once its notification arrives, at once with Cache-Control: no-cache, and at once on the node
// that wrote it.
TEST_F(TwoNodesTest, CachedReadsFollowTheOtherNodesWrites) {
  http::Client a(Base(0)), b(Base(1));
  auto version_of = [](const Result<http::HttpResponse>& r) -> std::string {
    if (!r.ok() || r->status != 200) return r.ok() ? std::to_string(r->status) : "error";
    return std::string(ParseJson(r->body)->at("meta").at("versionId").as_string());
  };
  ASSERT_EQ(
      a.Send("PUT", "/fhir/Patient/cached", R"({"resourceType":"Patient","id":"cached"})", kJson)
          ->status,
      201);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(version_of(b.Send("GET", "/fhir/Patient/cached")), "1");
  for (int round = 2; round <= 6; ++round) {
    std::string want = std::to_string(round);
    ASSERT_EQ(a.Send("PUT", "/fhir/Patient/cached",
                     R"({"resourceType":"Patient","id":"cached","gender":"other"})", kJson)
                  ->status,
              200);
    EXPECT_EQ(version_of(a.Send("GET", "/fhir/Patient/cached")), want);  // its own write
    EXPECT_EQ(
        version_of(b.Send("GET", "/fhir/Patient/cached", "", {{"Cache-Control", "no-cache"}})),
        want);
    auto start = std::chrono::steady_clock::now();
    std::string seen;
    while (std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
      seen = version_of(b.Send("GET", "/fhir/Patient/cached"));
      if (seen == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(seen, want) << "node B still serves an old version after 3 s";
  }
  ASSERT_LT(a.Send("DELETE", "/fhir/Patient/cached")->status, 300);
  int status = 0;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    status = b.Send("GET", "/fhir/Patient/cached")->status;
    if (status == 410) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(status, 410);
}

}  // namespace
}  // namespace taproot
