// A primary and a streaming replica on 127.0.0.1 (clusters of the test's own, made with
// scripts/pg-test-cluster): reads and searches go to the replica, writes to the primary, and a
// node reads its own writes (and Cache-Control: no-cache reads the latest) from the primary
// while the replica is behind.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/ids.h"
#include "common/json.h"
#include "http/client.h"
#include "store/postgres/pg.h"
#include "test_server.h"
#include "test_util.h"

namespace taproot {
namespace {

namespace fs = std::filesystem;

class ReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tag = NewUuid();
    primary_dir_ = (fs::temp_directory_path() / ("taproot-primary-" + tag)).string();
    replica_dir_ = (fs::temp_directory_path() / ("taproot-replica-" + tag)).string();
    auto p = Cluster("start " + primary_dir_);
    ASSERT_EQ(p.exit_code, 0) << p.text;
    auto r = Cluster("replica " + replica_dir_ + " " + primary_dir_);
    ASSERT_EQ(r.exit_code, 0) << r.text;
    primary_url_ = Url(primary_dir_);
    replica_url_ = Url(replica_dir_);
  }
  void TearDown() override {
    Cluster("stop " + replica_dir_);
    Cluster("stop " + primary_dir_);
    fs::remove_all(replica_dir_);
    fs::remove_all(primary_dir_);
  }
  static testing::CommandOutput Cluster(const std::string& args) {
    return testing::RunCommand(std::string(TAPROOT_SOURCE_DIR) + "/scripts/pg-test-cluster " +
                               args);
  }
  static std::string Url(const std::string& dir) {
    std::string url = testing::ReadFileText(dir + "/url");
    while (!url.empty() && url.back() == '\n') url.pop_back();
    return url;
  }
  // Runs SQL on the replica directly.
  Status OnReplica(const std::string& sql) {
    ASSIGN_OR_RETURN(auto c, store::pg::Conn::Open(replica_url_));
    return c->Exec(sql);
  }
  // Waits until the replica has the resource (its replay caught up).
  bool ReplicaHas(const std::string& id) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = store::pg::Conn::Open(replica_url_);
      if (c.ok()) {
        auto r = (*c)->Query("SELECT count(*) FROM current WHERE type='Patient' AND id=$1",
                             store::pg::Params().Text(id));
        if (r.ok() && r->Int(0, 0) == 1) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::string primary_dir_, replica_dir_, primary_url_, replica_url_;
};

const http::Headers kJson = {{"Content-Type", "application/fhir+json"}};

std::string PatientBody(const std::string& id) {
  return R"({"resourceType":"Patient","id":")" + id + R"(","gender":"other"})";
}

TEST_F(ReplicaTest, ReadsFromTheReplicaWritesToThePrimaryOwnWritesVisible) {
  // Node A reads from the replica; node B writes to the primary only.
  testing::TestServer a({}, {"--store", "postgres", "--postgres", primary_url_,
                             "--postgres-replica", replica_url_, "--no-access-log"});
  ASSERT_TRUE(a.Start()) << a.log();
  testing::TestServer b({}, {"--postgres", primary_url_, "--no-access-log"});
  ASSERT_TRUE(b.Start()) << b.log();
  http::Client ca(a.base()), cb(b.base());

  ASSERT_EQ(ca.Send("PUT", "/fhir/Patient/p1", PatientBody("p1"), kJson)->status, 201);
  ASSERT_TRUE(ReplicaHas("p1"));

  // With the primary away, node A still answers reads and searches: they come from the
  // replica. Writes fail with 503.
  ASSERT_EQ(Cluster("pause " + primary_dir_).exit_code, 0);
  EXPECT_EQ(ca.Send("GET", "/fhir/Patient/p1")->status, 200);
  auto found = ca.Send("GET", "/fhir/Patient?gender=other");
  ASSERT_EQ(found->status, 200) << found->body;
  EXPECT_EQ(ParseJson(found->body)->at("total").as_int64(), 1);
  EXPECT_EQ(ca.Send("PUT", "/fhir/Patient/p9", PatientBody("p9"), kJson)->status, 503);
  ASSERT_EQ(Cluster("resume " + primary_dir_).exit_code, 0);

  // The replica stops replaying: it falls behind.
  ASSERT_TRUE(OnReplica("SELECT pg_wal_replay_pause()").ok());
  // Another node's write is not on the replica: node A does not see it by default, and does
  // with Cache-Control: no-cache (read from the primary).
  ASSERT_EQ(cb.Send("PUT", "/fhir/Patient/p2", PatientBody("p2"), kJson)->status, 201);
  EXPECT_EQ(ca.Send("GET", "/fhir/Patient/p2")->status, 404);
  EXPECT_EQ(ParseJson(ca.Send("GET", "/fhir/Patient?gender=other")->body)->at("total"), 1);
  EXPECT_EQ(ca.Send("GET", "/fhir/Patient/p2", "", {{"Cache-Control", "no-cache"}})->status, 200);
  EXPECT_EQ(
      ParseJson(
          ca.Send("GET", "/fhir/Patient?gender=other", "", {{"Cache-Control", "no-cache"}})->body)
          ->at("total"),
      2);
  // Node A's own write: every read on node A sees it at once (the replica is behind it, so
  // reads go to the primary).
  ASSERT_EQ(ca.Send("PUT", "/fhir/Patient/p3", PatientBody("p3"), kJson)->status, 201);
  EXPECT_EQ(ca.Send("GET", "/fhir/Patient/p3")->status, 200);
  EXPECT_EQ(ParseJson(ca.Send("GET", "/fhir/Patient?gender=other")->body)->at("total"), 3);

  // Replaying again, the replica catches up and serves everything.
  ASSERT_TRUE(OnReplica("SELECT pg_wal_replay_resume()").ok());
  ASSERT_TRUE(ReplicaHas("p3"));
  ASSERT_EQ(Cluster("pause " + primary_dir_).exit_code, 0);
  EXPECT_EQ(ca.Send("GET", "/fhir/Patient/p2")->status, 200);
  EXPECT_EQ(ParseJson(ca.Send("GET", "/fhir/Patient?gender=other")->body)->at("total"), 3);
  ASSERT_EQ(Cluster("resume " + primary_dir_).exit_code, 0);
}

}  // namespace
}  // namespace taproot
