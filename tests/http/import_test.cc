// `taproot import`, offline and over HTTP, on the Synthea bundles.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/ids.h"
#include "common/json.h"
#include "http/client.h"
#include "importer/progress.h"
#include "store/test_stores.h"
#include "test_server.h"
#include "test_util.h"

namespace taproot {
namespace {

namespace fs = std::filesystem;

using CommandRun = testing::CommandOutput;
CommandRun Command(const std::string& cmd) { return testing::RunCommand(cmd); }

fs::path TempDir() {
  fs::path d = fs::temp_directory_path() / ("taproot-import-" + NewUuid());
  fs::create_directories(d);
  return d;
}

class OfflineImportTest : public ::testing::TestWithParam<testing::Backend> {};
INSTANTIATE_TEST_SUITE_P(Backends, OfflineImportTest,
                         ::testing::Values(testing::Backend::kSqlite, testing::Backend::kPostgres),
                         testing::BackendName);

TEST_P(OfflineImportTest, AllSyntheaBundlesLoadWithZeroFailures) {
  testing::TestStore place(GetParam());
  std::string store_args;
  for (const std::string& a : place.ServeArgs()) store_args += " '" + a + "'";
  CommandRun r = Command(std::string(TAPROOT_BINARY) + " import --no-progress" + store_args + " " +
                         TAPROOT_FIXTURES + "/bundles");
  EXPECT_EQ(r.exit_code, 0) << r.text;
  EXPECT_NE(r.text.find("from 61 files"), std::string::npos) << r.text;
  EXPECT_NE(r.text.find(", 0 failed, peak RSS"), std::string::npos) << r.text;
  // The loaded store serves the patients and their references resolve to stored resources.
  testing::TestServer server = GetParam() == testing::Backend::kSqlite
                                   ? testing::TestServer(place.dir())
                                   : testing::TestServer({}, place.ServeArgs());
  ASSERT_TRUE(server.Start()) << server.log();
  http::Client c(server.base());
  auto patients = c.Send("GET", "/fhir/Patient?_summary=count");
  EXPECT_EQ(ParseJson(patients->body)->at("total"), 59);
  auto obs = c.Send("GET", "/fhir/Observation?_count=1");
  json::value b = *ParseJson(obs->body);
  std::string subject(b.at("entry").at(0).at("resource").at("subject").at("reference").as_string());
  EXPECT_EQ(c.Send("GET", "/fhir/" + subject)->status, 200) << subject;
  server.Kill();
  if (GetParam() == testing::Backend::kPostgres) {
    // Written through the API, every clinical row is filed under its patient.
    auto sql = store::pg::Conn::Open(place.url());
    ASSERT_TRUE(sql.ok());
    auto count = [&](const std::string& q) {
      auto r = (*sql)->Query(q);
      EXPECT_TRUE(r.ok()) << q;
      return r.ok() ? r->Int(0, 0) : -1;
    };
    EXPECT_EQ(count("SELECT count(*) FROM current WHERE type='Patient' AND patient<>id"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM current WHERE type IN ('Observation', 'Encounter', "
                    "'Condition', 'MedicationRequest', 'Procedure') AND patient=''"),
              0);
    EXPECT_EQ(
        count("SELECT count(*) FROM current c JOIN idx_ref r ON r.seq=c.seq AND "
              "r.tp IN (SELECT tp FROM idx_keys WHERE param='subject') AND r.target_type='Patient' "
              "WHERE c.patient<>r.target"),
        0);
    EXPECT_EQ(count("SELECT count(*) FROM idx_token t JOIN versions v ON v.seq=t.seq WHERE "
                    "t.patient<>v.patient"),
              0);
  }
}

TEST(ImportTest, OverHttpOneBadFileDoesNotStopTheOthers) {
  testing::TestServer server;
  ASSERT_TRUE(server.Start()) << server.log();
  fs::path in = TempDir();
  fs::path bundles = fs::path(TAPROOT_FIXTURES) / "bundles";
  int copied = 0;
  for (auto& e : fs::directory_iterator(bundles)) {
    std::string name = e.path().filename().string();
    if (name.find("Information") != std::string::npos || copied < 2) {
      fs::copy(e.path(), in / name);
      if (name.find("Information") == std::string::npos) ++copied;
    }
  }
  // A transaction whose second entry is invalid: nothing of it may be left behind.
  std::ofstream(in / "zz-bad-transaction.json")
      << R"({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","identifier":[{"value":"must-not-exist"}]},"request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Patient","birthDate":"bad"},"request":{"method":"POST","url":"Patient"}}]})";
  std::ofstream(in / "broken.json") << "{ this is not json";
  std::ofstream(in / "single.json") << R"({"resourceType":"Patient","id":"single-one"})";
  std::ofstream(in / "lines.ndjson") << R"({"resourceType":"Patient","id":"nd1"})"
                                     << "\n"
                                     << R"({"resourceType":"Patient","id":"nd2"})"
                                     << "\n";
  CommandRun r = Command(std::string(TAPROOT_BINARY) + " import --no-progress --server " +
                         server.base() + "/fhir " + in.string());
  EXPECT_EQ(r.exit_code, 3) << r.text;  // failures are reported in the exit code
  EXPECT_NE(r.text.find("failed: " + (in / "broken.json").string()), std::string::npos) << r.text;
  EXPECT_NE(r.text.find("zz-bad-transaction.json"), std::string::npos) << r.text;
  http::Client c(server.base());
  EXPECT_EQ(ParseJson(c.Send("GET", "/fhir/Patient?identifier=must-not-exist")->body)->at("total"),
            0);
  EXPECT_EQ(ParseJson(c.Send("GET", "/fhir/Patient?_summary=count")->body)->at("total"), 2 + 3);
  EXPECT_EQ(c.Send("GET", "/fhir/Patient/nd2")->status, 200);
  fs::remove_all(in);
}

TEST(ProgressTest, LineShowsCountsRateAndEta) {
  std::string line = importer::Progress::Line("import", 3, 10, 5000, 0, 2.0, 0.5, 100);
  EXPECT_NE(line.find("50% files 3/10  5000 resources  2500/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 2s"), std::string::npos) << line;
  EXPECT_NE(line.find("[#"), std::string::npos) << line;
  EXPECT_LE(line.size(), 100u);
}

}  // namespace
}  // namespace taproot
