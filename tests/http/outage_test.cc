// The database goes away and comes back: requests fail with 503 and an OperationOutcome while
// it is away, nothing is half-written, and the server recovers by itself. Uses a cluster of its
// own (scripts/pg-test-cluster), since it stops it.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/ids.h"
#include "common/json.h"
#include "http/client.h"
#include "test_server.h"
#include "test_util.h"

namespace taproot {
namespace {

namespace fs = std::filesystem;

class OutageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("taproot-outage-" + NewUuid())).string();
    auto r = Cluster("start");
    ASSERT_EQ(r.exit_code, 0) << r.text;
    url_ = testing::ReadFileText(dir_ + "/url");
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
  }
  void TearDown() override {
    Cluster("stop");
    fs::remove_all(dir_);
  }
  testing::CommandOutput Cluster(const std::string& cmd) {
    return testing::RunCommand(std::string(TAPROOT_SOURCE_DIR) + "/scripts/pg-test-cluster " + cmd +
                               " " + dir_);
  }
  std::string dir_, url_;
};

const http::Headers kJson = {{"Content-Type", "application/fhir+json"}};

TEST_F(OutageTest, UnavailableWhileAwayAndRecoversWhenBack) {
  testing::TestServer server({}, {"--store", "postgres", "--postgres", url_, "--no-access-log",
                                  "--postgres-connections", "4"});
  ASSERT_TRUE(server.Start()) << server.log();
  http::Client c(server.base());
  ASSERT_EQ(
      c.Send("PUT", "/fhir/Patient/p1", R"({"resourceType":"Patient","id":"p1"})", kJson)->status,
      201);

  EXPECT_EQ(c.Send("GET", "/readyz")->status, 200);
  ASSERT_EQ(Cluster("pause").exit_code, 0);
  // A readiness probe says so (a load balancer then stops sending requests here); liveness
  // does not change.
  EXPECT_EQ(c.Send("GET", "/readyz")->status, 503);
  EXPECT_EQ(c.Send("GET", "/healthz")->status, 200);
  // Every kind of request, more times than there are pooled connections.
  for (int i = 0; i < 6; ++i) {
    for (auto [method, target, body] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"GET", "/fhir/Patient/p1", ""},
             {"GET", "/fhir/Patient?_id=p1", ""},
             {"POST", "/fhir/Patient", R"({"resourceType":"Patient","gender":"male"})"},
             {"PUT", "/fhir/Patient/p1",
              R"({"resourceType":"Patient","id":"p1","gender":"female"})"}}) {
      auto r = c.Send(method, target, body, body.empty() ? http::Headers{} : kJson);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->status, 503) << method << " " << target << ": " << r->body;
      auto outcome = ParseJson(r->body);
      ASSERT_TRUE(outcome.ok()) << r->body;
      EXPECT_EQ(outcome->at("resourceType").as_string(), "OperationOutcome");
    }
  }

  ASSERT_EQ(Cluster("resume").exit_code, 0);
  EXPECT_EQ(c.Send("GET", "/readyz")->status, 200);
  // Back: the pool reconnects on the next request that takes each connection.
  for (int i = 0; i < 6; ++i) {
    auto r = c.Send("GET", "/fhir/Patient/p1");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 200) << r->body;
  }
  // Nothing attempted during the outage was stored.
  auto all = c.Send("GET", "/fhir/Patient?_summary=count");
  EXPECT_EQ(ParseJson(all->body)->at("total").as_int64(), 1);
  EXPECT_EQ(ParseJson(c.Send("GET", "/fhir/Patient/p1")->body)->at("meta").at("versionId"), "1");
  EXPECT_EQ(c.Send("PUT", "/fhir/Patient/p1",
                   R"({"resourceType":"Patient","id":"p1","gender":"female"})", kJson)
                ->status,
            200);
}

}  // namespace
}  // namespace taproot
