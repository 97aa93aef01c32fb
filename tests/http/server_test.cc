// HTTP integration tests against the real binary on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "common/json.h"
#include "http/client.h"
#include "test_server.h"

namespace taproot {
namespace {

using testing::TestServer;

class HttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new TestServer({}, {"--max-body-mb", "1"});
    ASSERT_TRUE(server_->Start()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static TestServer* server_;
};
TestServer* HttpTest::server_ = nullptr;

const char* kPatient =
    R"({"resourceType":"Patient","identifier":[{"system":"urn:test","value":"42"}]})";

TEST_F(HttpTest, HealthReadinessAndMetadata) {
  http::Client c(server_->base());
  EXPECT_EQ(c.Send("GET", "/healthz")->status, 200);
  EXPECT_EQ(c.Send("GET", "/readyz")->status, 200);
  auto meta = c.Send("GET", "/fhir/metadata");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->status, 200);
  EXPECT_EQ(ParseJson(meta->body)->at("resourceType"), "CapabilityStatement");
  EXPECT_NE(meta->Header("Content-Type").find("application/fhir+json"), std::string::npos);
  EXPECT_EQ(c.Send("GET", "/elsewhere")->status, 404);
}

TEST_F(HttpTest, CrudOverHttpWithHeaders) {
  http::Client c(server_->base());
  auto created = c.Send("POST", "/fhir/Patient", kPatient, {{"X-Request-ID", "abc-123"}});
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(created->Header("X-Request-ID"), "abc-123");
  EXPECT_EQ(created->Header("ETag"), "W/\"1\"");
  std::string location = created->Header("Location");
  ASSERT_FALSE(location.empty());
  std::string path = location.substr(location.find("/fhir/"));
  auto read = c.Send("GET", path);
  EXPECT_EQ(read->status, 200);
  EXPECT_EQ(read->Header("X-Request-ID").size(), 36u);  // made by the server
  auto pretty = c.Send("GET", path + "?_pretty=true");
  EXPECT_NE(pretty->body.find("\n  \"resourceType\": \"Patient\""), std::string::npos);
  EXPECT_EQ(*ParseJson(pretty->body), *ParseJson(read->body));
  // The same request id again: answered from the log, not applied twice.
  auto again = c.Send("POST", "/fhir/Patient", kPatient, {{"X-Request-ID", "abc-123"}});
  EXPECT_EQ(again->status, 201);
  EXPECT_EQ(again->Header("Location"), location);
  auto head = c.Send("HEAD", path);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
}

TEST_F(HttpTest, BadRequestsGetOperationOutcomes) {
  http::Client c(server_->base());
  auto bad = c.Send("POST", "/fhir/Patient", R"({"resourceType":"Patient","birthDate":"soon"})");
  EXPECT_EQ(bad->status, 400);
  auto oo = ParseJson(bad->body);
  ASSERT_TRUE(oo.ok());
  EXPECT_EQ(oo->at("issue").at(0).at("expression").at(0), "Patient.birthDate");
  // Over the size limit (1 MB here): 413 with an OperationOutcome.
  std::string big = R"({"resourceType":"Patient","text":{"status":"generated","div":")" +
                    std::string(2 * 1024 * 1024, 'x') + "\"}}";
  auto too_big = c.Send("POST", "/fhir/Patient", big);
  ASSERT_TRUE(too_big.ok());
  EXPECT_EQ(too_big->status, 413);
  EXPECT_NE(too_big->body.find("too-long"), std::string::npos);
}

TEST_F(HttpTest, PlainJsonClientsGetApplicationJson) {
  http::Client c(server_->base());
  auto fhir = c.Send("GET", "/fhir/metadata");
  EXPECT_NE(fhir->Header("Content-Type").find("application/fhir+json"), std::string::npos);
  auto plain = c.Send("GET", "/fhir/metadata", "", {{"Accept", "application/json"}});
  EXPECT_EQ(plain->Header("Content-Type").find("application/json"), 0u)
      << plain->Header("Content-Type");
  auto format = c.Send("GET", "/fhir/metadata?_format=json");
  EXPECT_EQ(format->Header("Content-Type").find("application/json"), 0u);
  EXPECT_EQ(c.Send("GET", "/fhir/metadata", "", {{"Accept", "application/fhir+xml"}})->status, 406);
}

// A raw socket, to see the interim response a client library would hide.
TEST_F(HttpTest, ExpectContinueGetsAnInterimResponseBeforeTheBody) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string body = R"({"resourceType":"Patient","gender":"other"})";
  std::string head =
      "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
      "Expect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf, 0);  // sent before the body exists
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 100 Continue", 0), 0u);
  ASSERT_EQ(send(fd, body.data(), body.size(), 0), static_cast<ssize_t>(body.size()));
  n = recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 201", 0), 0u);
  close(fd);
}

TEST_F(HttpTest, KeepAliveServesManyRequestsOnOneConnection) {
  http::Client c(server_->base());
  for (int i = 0; i < 200; ++i) {
    auto r = c.Send("GET", "/healthz");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 200);
  }
}

TEST_F(HttpTest, FiftyConcurrentConditionalCreatesOverHttpMakeOne) {
  std::atomic<int> created{0}, matched{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      http::Client c(server_->base());
      auto r =
          c.Send("POST", "/fhir/Patient",
                 R"({"resourceType":"Patient","identifier":[{"system":"urn:race","value":"1"}]})",
                 {{"If-None-Exist", "identifier=urn:race|1"}});
      if (!r.ok()) {
        other++;
      } else {
        (r->status == 201 ? created : r->status == 200 ? matched : other)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created, 1);
  EXPECT_EQ(matched, 49);
  EXPECT_EQ(other, 0);
  http::Client c(server_->base());
  auto s = c.Send("GET", "/fhir/Patient?identifier=urn:race%7C1");
  EXPECT_EQ(ParseJson(s->body)->at("total"), 1);
}

TEST(HttpLifecycleTest, GracefulStopKeepsTheStoreAndLogsNoPatientData) {
  TestServer server;
  ASSERT_TRUE(server.Start()) << server.log();
  {
    http::Client c(server.base());
    auto r = c.Send("PUT", "/fhir/Patient/keep",
                    R"({"resourceType":"Patient","id":"keep","name":[{"family":"Zebedee"}]})");
    ASSERT_EQ(r->status, 201);
    (void)c.Send("GET", "/fhir/Patient?identifier=secret-identifier-value");
  }
  EXPECT_EQ(server.Stop(), 0);
  std::string log = server.log();
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos) << log;
  EXPECT_NE(log.find("request method=PUT path=/fhir/Patient/keep status=201"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("Zebedee"), std::string::npos);
  EXPECT_EQ(log.find("secret-identifier-value"), std::string::npos);
  ASSERT_TRUE(server.Start()) << server.log();
  http::Client c(server.base());
  EXPECT_EQ(c.Send("GET", "/fhir/Patient/keep")->status, 200);
}

}  // namespace
}  // namespace taproot
