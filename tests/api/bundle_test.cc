#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine_fixture.h"
#include "test_util.h"

namespace taproot::api {
namespace {

std::string Transaction(const std::string& type, const std::string& entries) {
  return R"({"resourceType":"Bundle","type":")" + type + R"(","entry":[)" + entries + "]}";
}

TEST_P(EngineTest, TransactionResolvesUrnUuidsAndConditionalReferences) {
  Do("POST", "Organization",
     R"({"resourceType":"Organization","identifier":[{"system":"https://ods","value":"A81001"}]})");
  std::string tx = Transaction("transaction", R"(
    {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
     "resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=https://ods|A81001"}},
     "request":{"method":"POST","url":"Patient"}},
    {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"bp"},
                 "subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
     "request":{"method":"POST","url":"Observation"}})");
  FhirResponse r = Do("POST", "", tx);
  ASSERT_EQ(r.status, 200) << r.body;
  json::value b = Body(r);
  EXPECT_EQ(b.at("type"), "transaction-response");
  ASSERT_EQ(b.at("entry").as_array().size(), 2u);
  EXPECT_EQ(b.at("entry").at(0).at("response").at("status"), "201 Created");
  std::string loc(b.at("entry").at(0).at("response").at("location").as_string());
  std::string patient_id = loc.substr(8, loc.find("/_history") - 8);
  std::string obs_loc(b.at("entry").at(1).at("response").at("location").as_string());
  json::value obs = Body(Do("GET", obs_loc.substr(0, obs_loc.find("/_history"))));
  EXPECT_EQ(obs.at("subject").at("reference").as_string(), "Patient/" + patient_id);
  json::value patient = Body(Do("GET", "Patient/" + patient_id));
  std::string org_ref(patient.at("managingOrganization").at("reference").as_string());
  EXPECT_EQ(org_ref.rfind("Organization/", 0), 0u) << org_ref;
}

TEST_P(EngineTest, TransactionIsAllOrNothing) {
  std::string tx = Transaction("transaction", R"(
    {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":"x"},"request":{"method":"PUT","url":"Patient/x"}},
    {"request":{"method":"DELETE","url":"Patient/nothing"}},
    {"resource":{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=missing"}},
     "request":{"method":"POST","url":"Patient"}})");
  FhirResponse r = Do("POST", "", tx);
  EXPECT_EQ(r.status, 412) << r.body;
  EXPECT_EQ(Body(r).at("resourceType"), "OperationOutcome");
  EXPECT_EQ(Total("_history"), 0);
  // An invalid resource anywhere fails the whole transaction with its location.
  FhirResponse bad = Do("POST", "", Transaction("transaction", R"(
    {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","gender":1},"request":{"method":"POST","url":"Patient"}})"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Body(bad).at("issue").at(0).at("expression").at(0), "Bundle.entry[1].resource.gender");
  EXPECT_EQ(Total("_history"), 0);
}

TEST_P(EngineTest, TransactionOrderDeletePostPutGet) {
  Do("PUT", "Patient/old", R"({"resourceType":"Patient","id":"old"})");
  // Listed in reverse of the processing order. The GET must see the PUT; the DELETE runs before
  // the POST that has the same identifier, so the conditional create does not match it.
  std::string tx = Transaction("transaction", R"(
    {"request":{"method":"GET","url":"Patient/p1"}},
    {"resource":{"resourceType":"Patient","id":"p1","gender":"male"},"request":{"method":"PUT","url":"Patient/p1"}},
    {"resource":{"resourceType":"Patient","identifier":[{"value":"k"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=k"}},
    {"request":{"method":"DELETE","url":"Patient?identifier=k"}})");
  Do("POST", "Patient", R"({"resourceType":"Patient","identifier":[{"value":"k"}]})");
  FhirResponse r = Do("POST", "", tx, {{"prefer", "return=representation"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json::value b = Body(r);
  EXPECT_EQ(b.at("entry").at(0).at("response").at("status"), "200 OK");
  EXPECT_EQ(b.at("entry").at(0).at("resource").at("gender"), "male");
  EXPECT_EQ(b.at("entry").at(2).at("response").at("status"), "201 Created");
  EXPECT_EQ(b.at("entry").at(3).at("response").at("status"), "204 No Content");
  EXPECT_EQ(Total("Patient?identifier=k"), 1);
}

TEST_P(EngineTest, TransactionConditionalCreateAndUpdateAreReferencedByFullUrl) {
  Do("POST", "Organization",
     R"({"resourceType":"Organization","identifier":[{"system":"ods","value":"X1"}]})");
  // The Organization exists (the conditional create matches it); the Patient does not (the
  // conditional update creates it). References to both fullUrls must point at the results.
  std::string tx = Transaction("transaction", R"(
    {"fullUrl":"urn:uuid:0b0c1f2e-0000-4000-8000-000000000001",
     "resource":{"resourceType":"Organization","identifier":[{"system":"ods","value":"X1"}]},
     "request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=ods|X1"}},
    {"fullUrl":"urn:uuid:0b0c1f2e-0000-4000-8000-000000000002",
     "resource":{"resourceType":"Patient","identifier":[{"system":"nhs","value":"943"}],
                 "managingOrganization":{"reference":"urn:uuid:0b0c1f2e-0000-4000-8000-000000000001"}},
     "request":{"method":"PUT","url":"Patient?identifier=nhs|943"}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"urn:uuid:0b0c1f2e-0000-4000-8000-000000000002"}},
     "request":{"method":"POST","url":"Observation"}})");
  FhirResponse r = Do("POST", "", tx);
  ASSERT_EQ(r.status, 200) << r.body;
  json::value b = Body(r);
  EXPECT_EQ(b.at("entry").at(0).at("response").at("status"), "200 OK");
  EXPECT_EQ(b.at("entry").at(1).at("response").at("status"), "201 Created");
  EXPECT_EQ(Total("Organization"), 1);
  json::value patients = Body(Do("GET", "Patient?identifier=nhs|943"));
  ASSERT_EQ(patients.at("total"), 1);
  const json::value& patient = patients.at("entry").at(0).at("resource");
  json::value orgs = Body(Do("GET", "Organization"));
  std::string org_id(orgs.at("entry").at(0).at("resource").at("id").as_string());
  EXPECT_EQ(patient.at("managingOrganization").at("reference").as_string(),
            "Organization/" + org_id);
  json::value obs = Body(Do("GET", "Observation"));
  EXPECT_EQ(obs.at("entry").at(0).at("resource").at("subject").at("reference").as_string(),
            "Patient/" + std::string(patient.at("id").as_string()));
}

TEST_P(EngineTest, BatchEntriesSucceedOrFailAlone) {
  std::string batch = Transaction("batch", R"(
    {"resource":{"resourceType":"Patient","id":"ok1"},"request":{"method":"PUT","url":"Patient/ok1"}},
    {"resource":{"resourceType":"Patient","birthDate":"nope"},"request":{"method":"POST","url":"Patient"}},
    {"request":{"method":"GET","url":"Patient/missing"}},
    {"resource":{"resourceType":"Patient","id":"ok2"},"request":{"method":"PUT","url":"Patient/ok2"}},
    {"request":{"method":"GET","url":"Patient?_id=ok1"}})");
  FhirResponse r = Do("POST", "", batch);
  ASSERT_EQ(r.status, 200) << r.body;
  json::value b = Body(r);
  EXPECT_EQ(b.at("type"), "batch-response");
  EXPECT_EQ(b.at("entry").at(0).at("response").at("status"), "201 Created");
  EXPECT_EQ(b.at("entry").at(1).at("response").at("status"), "400 Bad Request");
  EXPECT_EQ(b.at("entry").at(1).at("response").at("outcome").at("resourceType"),
            "OperationOutcome");
  EXPECT_EQ(b.at("entry").at(2).at("response").at("status"), "404 Not Found");
  EXPECT_EQ(b.at("entry").at(3).at("response").at("status"), "201 Created");
  EXPECT_EQ(b.at("entry").at(4).at("response").at("status"), "200 OK");
  EXPECT_EQ(Total("Patient"), 2);
}

TEST_P(EngineTest, BundleEnvelopeErrors) {
  EXPECT_EQ(Do("POST", "", R"({"resourceType":"Bundle","type":"collection"})").status, 400);
  EXPECT_EQ(Do("POST", "", R"({"resourceType":"Patient"})").status, 400);
  FhirResponse dup = Do("POST", "", Transaction("transaction", R"(
    {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
    {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}})"));
  EXPECT_EQ(dup.status, 400);
  FhirResponse dangling = Do("POST", "", Transaction("transaction", R"(
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:00000000-0000-0000-0000-000000000000"}},"request":{"method":"POST","url":"Observation"}})"));
  EXPECT_EQ(dangling.status, 400);
  EXPECT_EQ(Total("_history"), 0);
}

TEST_P(EngineTest, SyntheaBundlesLoadWithReferencesResolved) {
  std::filesystem::path dir = std::filesystem::path(TAPROOT_FIXTURES) / "bundles";
  auto read = [](const std::filesystem::path& p) { return testing::ReadFileText(p); };
  std::vector<std::filesystem::path> patients;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.find("Information") != std::string::npos) {
      FhirResponse r = Do("POST", "", read(e.path()));
      ASSERT_EQ(r.status, 200) << name;
      json::value body = Body(r);
      for (auto& entry : body.at("entry").as_array()) {
        ASSERT_EQ(entry.at("response").at("status").as_string()[0], '2') << name;
      }
    } else if (patients.size() < 3) {
      patients.push_back(e.path());
    }
  }
  for (auto& p : patients) {
    std::string text = read(p);
    size_t entries = ParseJson(text)->at("entry").as_array().size();
    FhirResponse r = Do("POST", "", text, {{"prefer", "return=minimal"}});
    ASSERT_EQ(r.status, 200) << p << ": " << r.body.substr(0, 500);
    EXPECT_EQ(Body(r).at("entry").as_array().size(), entries);
  }
  EXPECT_EQ(Total("Patient"), 3);
  // No urn:uuid or conditional reference survives into stored resources.
  FhirResponse obs = Do("GET", "Observation?_count=200");
  EXPECT_EQ(obs.body.find("urn:uuid:"), std::string::npos);
  EXPECT_EQ(obs.body.find("?identifier="), std::string::npos);
}

}  // namespace
}  // namespace taproot::api
