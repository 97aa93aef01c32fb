// `taproot migrate --from-sqlite DIR --postgres URL`: every version arrives, in order, and the
// copy answers searches as the original does.
#include <gtest/gtest.h>

#include <filesystem>

#include "api/engine.h"
#include "api/engine_fixture.h"
#include "common/json.h"
#include "fhir/model.h"
#include "importer/importer.h"
#include "search/query.h"
#include "store/test_stores.h"
#include "test_util.h"

namespace taproot {
namespace {

namespace fs = std::filesystem;
using testing::Backend;
using testing::TestStore;

api::FhirResponse Send(api::Engine& engine, const std::string& method, const std::string& target,
                       const std::string& body = {}) {
  api::FhirRequest req = api::MakeRequest(method, target, body);
  api::RequestContext ctx;
  ctx.base_url = "http://test/fhir";
  ctx.request_id = "test";
  return engine.Handle(ctx, req);
}

std::vector<store::VersionRecord> AllVersions(store::Store& s) {
  std::vector<store::VersionRecord> out;
  int64_t after = 0;
  for (;;) {
    std::vector<store::VersionRecord> batch;
    EXPECT_TRUE(s.Read([&](store::ReadView& v) -> Status {
                   ASSIGN_OR_RETURN(batch, v.ScanVersions(after, 500));
                   return Status::Ok();
                 }).ok());
    if (batch.empty()) return out;
    after = batch.back().seq;
    for (auto& v : batch) out.push_back(std::move(v));
  }
}

TEST(MigrateTest, CopiesEveryVersionAndSearchesAgree) {
  TestStore from(Backend::kSqlite), to(Backend::kPostgres);
  ASSERT_FALSE(to.url().empty()) << "no PostgreSQL test database";
  std::string patient_id, observation_id;
  {
    auto s = from.Open();
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    api::Engine engine(**s, fhir::R4());
    // Six Synthea patients with everything they have, then an update and a delete.
    fs::path some = fs::path(from.dir()).string() + "-in";
    fs::create_directories(some);
    int n = 0;
    for (auto& e : fs::directory_iterator(fs::path(TAPROOT_FIXTURES) / "bundles")) {
      // The hospital and practitioner bundles too: the patients' bundles refer to them.
      std::string name = e.path().filename().string();
      bool shared = name.find("Information") != std::string::npos;
      if (shared || n < 6) fs::copy(e.path(), some / e.path().filename());
      if (!shared) ++n;
    }
    auto sink = importer::MakeEngineSink(engine);
    importer::ImportOptions io;
    io.progress = false;
    auto summary = importer::Import({some.string()}, *sink, io);
    fs::remove_all(some);
    ASSERT_TRUE(summary.ok() && summary->failures == 0)
        << (summary.ok() ? summary->ToString() : summary.status().ToString());
    json::value patients = *ParseJson(Send(engine, "GET", "/Patient?_count=1").body);
    json::value p = patients.at("entry").at(0).at("resource");
    patient_id = std::string(p.at("id").as_string());
    p.as_object()["gender"] = "unknown";
    ASSERT_EQ(Send(engine, "PUT", "/Patient/" + patient_id, json::serialize(p)).status, 200);
    json::value obs = *ParseJson(Send(engine, "GET", "/Observation?_count=1").body);
    observation_id = std::string(obs.at("entry").at(0).at("resource").at("id").as_string());
    int deleted = Send(engine, "DELETE", "/Observation/" + observation_id).status;
    ASSERT_TRUE(deleted == 200 || deleted == 204) << deleted;
    (*s)->Close();
  }

  auto run = testing::RunCommand(std::string(TAPROOT_BINARY) + " migrate --no-progress " +
                                 "--from-sqlite " + from.dir() + " --postgres '" + to.url() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.text;
  EXPECT_NE(run.text.find("migrate: verified: both stores hold"), std::string::npos) << run.text;

  auto a = from.Open();
  auto b = to.Open();
  ASSERT_TRUE(a.ok() && b.ok());
  // The same versions, in the same order, byte for byte.
  std::vector<store::VersionRecord> va = AllVersions(**a), vb = AllVersions(**b);
  ASSERT_EQ(va.size(), vb.size());
  ASSERT_GT(va.size(), 1000u);
  for (size_t i = 0; i < va.size(); ++i) {
    EXPECT_EQ(va[i].type + "/" + va[i].id, vb[i].type + "/" + vb[i].id) << i;
    EXPECT_EQ(va[i].version, vb[i].version) << i;
    EXPECT_EQ(va[i].last_updated, vb[i].last_updated) << i;
    EXPECT_EQ(va[i].deleted, vb[i].deleted) << i;
    EXPECT_EQ(va[i].method, vb[i].method) << i;
    EXPECT_EQ(va[i].json, vb[i].json) << i;
    if (::testing::Test::HasFailure()) break;
  }
  // The copy answers as the original: reads, history, searches.
  api::Engine ea(**a, fhir::R4()), eb(**b, fhir::R4());
  for (const std::string& q : std::vector<std::string>{
           "/Patient/" + patient_id, "/Patient/" + patient_id + "/_history",
           "/Observation/" + observation_id, "/Patient?gender=unknown&_elements=id",
           "/Observation?_summary=count", "/Condition?_summary=count",
           "/Observation?code=http://loinc.org|8302-2&_summary=count",
           "/Encounter?patient=Patient/" + patient_id + "&_summary=count",
           "/Patient?name=a&_summary=count", "/Observation?_id=" + observation_id}) {
    api::FhirResponse ra = Send(ea, "GET", q), rb = Send(eb, "GET", q);
    EXPECT_EQ(ra.status, rb.status) << q;
    json::value ja = *ParseJson(ra.body), jb = *ParseJson(rb.body);
    if (ja.is_object() && ja.as_object().contains("total")) {
      EXPECT_EQ(ja.at("total"), jb.at("total")) << q;
    }
    if (ja.is_object() && ja.as_object().contains("meta") && !ja.as_object().contains("type")) {
      EXPECT_EQ(ja, jb) << q;  // a resource read: identical, versionId and lastUpdated included
    }
  }
  (*a)->Close();
  (*b)->Close();
  // Every row of the copy is filed under its patient (docs/scaling.md), checked in SQL against
  // the rows' own references.
  auto sql = store::pg::Conn::Open(to.url());
  ASSERT_TRUE(sql.ok());
  auto count = [&](const std::string& q) {
    auto r = (*sql)->Query(q);
    EXPECT_TRUE(r.ok()) << q << ": " << r.status().ToString();
    return r.ok() ? r->Int(0, 0) : -1;
  };
  EXPECT_EQ(count("SELECT count(*) FROM versions WHERE type='Patient' AND patient<>id"), 0);
  EXPECT_GT(count("SELECT count(*) FROM versions WHERE type='Patient'"), 6);
  EXPECT_EQ(count("SELECT count(*) FROM versions WHERE type IN ('Organization', "
                  "'Practitioner') AND patient<>''"),
            0);
  EXPECT_EQ(
      count("SELECT count(*) FROM current c JOIN idx_ref r ON r.seq=c.seq AND "
            "r.tp IN (SELECT tp FROM idx_keys WHERE param='subject') AND r.target_type='Patient' "
            "WHERE c.type IN "
            "('Observation', 'Condition') AND c.patient<>r.target"),
      0);
  EXPECT_GT(count("SELECT count(*) FROM current WHERE type='Observation' AND patient<>''"), 100);
  EXPECT_EQ(count("SELECT count(*) FROM current WHERE type='Observation' AND patient=''"), 0);
  for (const char* table : {"idx_token", "idx_string", "idx_date", "idx_quantity", "idx_ref",
                            "idx_uri", "idx_number"}) {
    EXPECT_EQ(count(std::string("SELECT count(*) FROM ") + table +
                    " t JOIN versions v ON v.seq=t.seq WHERE t.patient<>v.patient"),
              0)
        << table;
  }
  // The deleted Observation's tombstone stays with its patient.
  EXPECT_EQ(count("SELECT count(*) FROM versions WHERE type='Observation' AND id='" +
                  observation_id + "' AND deleted=1 AND patient<>''"),
            1);
  // Into a database that is no longer empty: refused.
  auto again =
      testing::RunCommand(std::string(TAPROOT_BINARY) + " migrate --no-progress " +
                          "--from-sqlite " + from.dir() + " --postgres '" + to.url() + "'");
  EXPECT_EQ(again.exit_code, 1) << again.text;
  EXPECT_NE(again.text.find("already holds resources"), std::string::npos) << again.text;
}

}  // namespace
}  // namespace taproot
