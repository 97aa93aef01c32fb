// Access control over HTTP, against a real server with authentication on (the default), on
// both store backends: the
// authorisation matrix (roles x interactions x resource types x relationship, consent-free
// sensitivity and patient states) written out as a table, then the audit trail those requests
// left.
//
// The world the matrix runs in (written with a system token first):
//   Organization orgA (ODS A81001), orgB (ODS B82002)
//   Patient pA: registered with orgA.   Patient pB: an open Encounter at orgB only.
//   Patient pR: restricted (meta.security R), registered with orgA, with address and telecom.
//   Observation oA (pA), oB (pB), oHidden (pA, not for patient view), oRedacted (pA, REDACTED).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "auth/jose.h"
#include "common/ids.h"
#include "common/json.h"
#include "http/client.h"
#include "store/test_stores.h"
#include "test_server.h"

namespace taproot {
namespace {

using testing::TestServer;

constexpr const char* kNotForPatient =
    R"({"system":"urn:taproot:access-label","code":"not-for-patient-view"})";
constexpr const char* kConf = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

// One world per backend, made by the first test that needs it and shared by the rest.
struct World {
  std::unique_ptr<testing::TestStore> place;
  std::unique_ptr<TestServer> server;
  bool started = false;
};

// Starts the backend's world on first use; `fresh` tells the caller to load its data.
TestServer* StartWorld(World& w, testing::Backend backend, bool* fresh) {
  *fresh = !w.server;
  if (!w.server) {
    w.place = std::make_unique<testing::TestStore>(backend);
    std::vector<std::string> args = {"--no-access-log"};
    if (backend == testing::Backend::kPostgres) {
      for (const std::string& a : w.place->ServeArgs()) args.push_back(a);
    }
    w.server = std::make_unique<TestServer>(std::string(), args, /*secure=*/true);
    w.started = w.server->Start();
  }
  return w.started ? w.server.get() : nullptr;
}

class AuthTest : public ::testing::TestWithParam<testing::Backend> {
 protected:
  void SetUp() override {
    bool fresh = false;
    server_ = StartWorld(worlds_[GetParam()], GetParam(), &fresh);
    ASSERT_NE(server_, nullptr) << worlds_[GetParam()].server->log();
    if (fresh) Load();
  }
  static void Load() {
    std::string sys = server_->Token({"--user", "loader", "--scope", "system/*.cruds"});
    ASSERT_FALSE(sys.empty());
    http::Client c(server_->base());
    auto put = [&](const std::string& path, const std::string& body) {
      auto r =
          c.Send("PUT", "/fhir/" + path, body,
                 {{"Authorization", "Bearer " + sys}, {"Content-Type", "application/fhir+json"}});
      ASSERT_TRUE(r.ok());
      ASSERT_LT(r->status, 300) << path << ": " << r->body;
    };
    put("Organization/orgA",
        R"({"resourceType":"Organization","id":"orgA","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}]})");
    put("Organization/orgB",
        R"({"resourceType":"Organization","id":"orgB","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"B82002"}]})");
    put("Patient/pA",
        R"({"resourceType":"Patient","id":"pA","name":[{"family":"Able"}],"generalPractitioner":[{"reference":"Organization/orgA"}]})");
    put("Patient/pB", R"({"resourceType":"Patient","id":"pB","name":[{"family":"Baker"}]})");
    put("Patient/pR",
        std::string(R"({"resourceType":"Patient","id":"pR","meta":{"security":[{"system":")") +
            kConf +
            R"(","code":"R"}]},"name":[{"family":"Rest"}],"telecom":[{"system":"phone","value":"0123"}],"address":[{"postalCode":"LS1 4AP"}],"generalPractitioner":[{"reference":"Organization/orgA"}]})");
    put("Encounter/eB",
        R"({"resourceType":"Encounter","id":"eB","status":"in-progress","class":{"code":"IMP"},"subject":{"reference":"Patient/pB"},"serviceProvider":{"reference":"Organization/orgB"}})");
    auto obs = [](const std::string& id, const std::string& patient, const std::string& meta) {
      return R"({"resourceType":"Observation","id":")" + id + "\"," + meta +
             R"("status":"final","code":{"text":"x"},"subject":{"reference":"Patient/)" + patient +
             "\"}}";
    };
    put("Observation/oA", obs("oA", "pA", ""));
    put("Observation/oB", obs("oB", "pB", ""));
    put("Observation/oHidden",
        obs("oHidden", "pA", std::string(R"("meta":{"security":[)") + kNotForPatient + "]},"));
    put("Observation/oRedacted", obs("oRedacted", "pA",
                                     std::string(R"("meta":{"security":[{"system":")") + kConf +
                                         R"(","code":"REDACTED"}]},)"));
  }
  static void TearDownTestSuite() {
    worlds_.clear();
    server_ = nullptr;
  }

  static std::string Token(std::vector<std::string> args) { return server_->Token(args); }

  static TestServer* server_;
  static std::map<testing::Backend, World> worlds_;
};
TestServer* AuthTest::server_ = nullptr;
std::map<testing::Backend, World> AuthTest::worlds_;
INSTANTIATE_TEST_SUITE_P(Backends, AuthTest,
                         ::testing::Values(testing::Backend::kSqlite, testing::Backend::kPostgres),
                         testing::BackendName);

struct Row {
  const char* who;  // a key into the token table below
  const char* method;
  const char* path;
  int status;
  const char* header = nullptr;  // "Name: value" sent with the request
  const char* must_have = nullptr;
  const char* must_not_have = nullptr;
};

const char* kNewObsB =
    R"({"resourceType":"Observation","status":"final","code":{"text":"n"},"subject":{"reference":"Patient/pB"}})";
const char* kNewObsA =
    R"({"resourceType":"Observation","status":"final","code":{"text":"n"},"subject":{"reference":"Patient/pA"}})";

TEST_P(AuthTest, AuthorisationMatrix) {
  std::map<std::string, std::string> tokens = {
      {"none", ""},
      {"gpA",
       Token({"--user", "Practitioner/g1", "--role", "S8000:G8000:R8000", "--org", "A81001"})},
      {"gpB",
       Token({"--user", "Practitioner/g2", "--role", "S8000:G8000:R8000", "--org", "B82002"})},
      {"gpA-readonly", Token({"--user", "Practitioner/g1", "--role", "R8000", "--org", "A81001",
                              "--scope", "user/Observation.rs user/Patient.rs"})},
      {"studentA", Token({"--user", "s1", "--role", "R8004", "--org", "A81001"})},
      {"obs-only", Token({"--user", "Practitioner/g1", "--role", "R8000", "--org", "A81001",
                          "--scope", "user/Observation.rs"})},
      {"adminA", Token({"--user", "a1", "--role", "R8008", "--org", "A81001"})},
      {"privacy", Token({"--user", "po1", "--role", "R0001", "--org", "A81001"})},
      {"operator", Token({"--user", "op1", "--role", "operator"})},
      {"system", Token({"--user", "app", "--scope", "system/*.cruds"})},
      {"patientA", Token({"--user", "Patient/pA", "--patient", "pA"})},
      {"unknown-role", Token({"--user", "x", "--role", "R9999", "--org", "A81001"})},
      {"expired", Token({"--user", "Practitioner/g1", "--role", "R8000", "--org", "A81001",
                         "--expires-in", "-600"})},
      {"wrong-aud", Token({"--user", "Practitioner/g1", "--role", "R8000", "--org", "A81001",
                           "--audience", "https://elsewhere"})},
  };
  // A token signed by another store's key: right shape, wrong signer.
  {
    std::string other = (std::filesystem::temp_directory_path() / "taproot-other-key").string();
    std::string cmd = std::string(TAPROOT_BINARY) + " token --data " + other +
                      " --user Practitioner/g1 --role R8000 --org A81001";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    pclose(p);
    tokens["foreign"] = std::string(buf, n > 0 ? n - 1 : 0);
    std::filesystem::remove_all(other);
    std::string t = tokens["gpA"];
    size_t d = t.find('.') + 3;
    t[d] = t[d] == 'x' ? 'y' : 'x';
    tokens["tampered"] = t;
  }

  const std::vector<Row> rows = {
      // Authentication.
      {"none", "GET", "/fhir/Observation/oA", 401},
      {"expired", "GET", "/fhir/Observation/oA", 401, nullptr, "expired"},
      {"wrong-aud", "GET", "/fhir/Observation/oA", 401, nullptr, "not meant for this server"},
      {"foreign", "GET", "/fhir/Observation/oA", 401},
      {"tampered", "GET", "/fhir/Observation/oA", 401},
      {"unknown-role", "GET", "/fhir/Observation/oA", 403, nullptr, "not in the access policy"},
      {"none", "GET", "/fhir/metadata", 200},  // discovery stays public
      // A clinician and legitimate relationships.
      {"gpA", "GET", "/fhir/Observation/oA", 200},  // registered
      {"gpA", "GET", "/fhir/Observation/oB", 403},  // no relationship
      {"gpB", "GET", "/fhir/Observation/oB", 200},  // open encounter
      {"gpB", "GET", "/fhir/Observation/oA", 403},
      {"gpA", "GET", "/fhir/Observation/oB", 200,
       "Taproot-Self-Claim: direct care referral letter"},
      {"gpA", "GET", "/fhir/Observation/oB", 200, "Taproot-Break-Glass: emergency unconscious"},
      {"gpA", "GET", "/fhir/Observation/oB", 400, "Taproot-Break-Glass: curious"},
      {"gpA", "GET", "/fhir/Observation?_count=50", 200, nullptr, "\"id\":\"oA\"", "\"id\":\"oB\""},
      {"gpA", "GET", "/fhir/Patient/pB/$everything", 200, nullptr, "\"id\":\"pB\"",
       "\"id\":\"oB\""},
      {"gpA", "GET", "/fhir/Patient/pB", 200},  // demographics need no relationship
      {"gpA", "PUT", "/fhir/Observation/oA", 200},
      {"gpA", "POST", "/fhir/Observation", 201},    // new data for pA
      {"gpA", "POST", "/fhir/Observation-B", 403},  // new data for pB: see body below
      // A conditional create matching what the caller may not see does not show it.
      {"gpA", "POST", "/fhir/Observation", 403, "If-None-Exist: _id=oB", nullptr, "Patient/pB"},
      {"adminA", "POST", "/fhir/Observation/_search", 403, nullptr, "role"},
      {"gpA", "DELETE", "/fhir/Observation/oB", 403},
      {"gpA-readonly", "PUT", "/fhir/Observation/oA", 403, nullptr, "scopes"},
      {"gpA-readonly", "GET", "/fhir/Observation/oA", 200},
      {"gpA-readonly", "GET", "/fhir/Encounter?_count=5", 403, nullptr, "scopes"},
      {"obs-only", "GET", "/fhir/Observation?_id=oA&_include=Observation:subject", 200, nullptr,
       "\"id\":\"oA\"", "\"resourceType\":\"Patient\""},
      {"obs-only", "GET", "/fhir/Patient/pA/$everything", 403, nullptr, "scopes"},
      // Roles.
      {"studentA", "GET", "/fhir/Observation/oA", 200},
      {"studentA", "PUT", "/fhir/Observation/oA", 403, nullptr, "role"},
      {"adminA", "GET", "/fhir/Observation/oA", 403, nullptr, "role"},
      {"adminA", "GET", "/fhir/Patient/pA", 200},
      {"adminA", "PUT", "/fhir/Patient/pB", 200},
      {"privacy", "GET", "/fhir/Observation/oA", 403},
      {"privacy", "GET", "/fhir/AuditEvent?_count=1", 200},
      {"gpA", "GET", "/fhir/AuditEvent?_count=1", 403},
      {"gpA", "POST", "/fhir/AuditEvent", 405},
      {"operator", "GET", "/fhir/$reindex", 200},
      {"operator", "GET", "/fhir/Observation/oA", 403},
      {"gpA", "GET", "/fhir/$reindex", 403},
      {"gpA", "GET", "/fhir/Observation?_explain=true", 403},
      {"system", "GET", "/fhir/Observation?_explain=true", 403},
      // Sensitive records.
      {"gpA", "GET", "/fhir/Patient/pR", 200, nullptr, "Rest", "LS1 4AP"},
      {"adminA", "GET", "/fhir/Patient/pR", 200, nullptr, "Rest", "0123"},
      {"system", "GET", "/fhir/Patient/pR", 200, nullptr, "LS1 4AP"},
      {"gpA", "GET", "/fhir/Patient?address-postalcode=LS1", 200, nullptr, nullptr,
       "\"id\":\"pR\""},
      {"gpA", "GET", "/fhir/Patient?name=Rest", 200, nullptr, "\"id\":\"pR\"", "LS1 4AP"},
      {"system", "GET", "/fhir/Observation/oRedacted", 403},
      {"gpA", "GET", "/fhir/Observation?_count=50", 200, nullptr, nullptr, "oRedacted"},
      // A patient's own token.
      {"patientA", "GET", "/fhir/Observation/oA", 200},
      {"patientA", "GET", "/fhir/Observation/oB", 403},
      {"patientA", "GET", "/fhir/Observation/oHidden", 403},
      {"patientA", "GET", "/fhir/Observation?_count=50", 200, nullptr, "\"id\":\"oA\"", "oHidden"},
      {"patientA", "GET", "/fhir/Patient/pB", 403},
      {"patientA", "GET", "/fhir/Patient?_count=50", 200, nullptr, "\"id\":\"pA\"",
       "\"id\":\"pB\""},
      {"patientA", "PUT", "/fhir/Observation/oA", 403, nullptr, "scopes"},
      {"patientA", "GET", "/fhir/AuditEvent", 403},
  };
  http::Client c(server_->base());
  for (const Row& row : rows) {
    std::string label = std::string(row.who) + " " + row.method + " " + row.path +
                        (row.header ? std::string(" [") + row.header + "]" : "");
    http::Headers h{{"Content-Type", "application/fhir+json"}};
    if (!tokens[row.who].empty()) h.emplace_back("Authorization", "Bearer " + tokens[row.who]);
    if (row.header) {
      std::string hv = row.header;
      size_t colon = hv.find(": ");
      h.emplace_back(hv.substr(0, colon), hv.substr(colon + 2));
    }
    std::string path = row.path, body;
    std::string m = row.method;
    if (path == "/fhir/Observation-B") {
      path = "/fhir/Observation";
      body = kNewObsB;
    } else if (m == "POST" && path == "/fhir/Observation") {
      body = kNewObsA;
    } else if (m == "PUT" && path == "/fhir/Observation/oA") {
      body =
          R"({"resourceType":"Observation","id":"oA","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pA"}})";
    } else if (m == "PUT" && path == "/fhir/Patient/pB") {
      body = R"({"resourceType":"Patient","id":"pB","name":[{"family":"Baker"}]})";
    } else if (m == "POST" && path == "/fhir/AuditEvent") {
      body = R"({"resourceType":"AuditEvent"})";
    }
    auto r = c.Send(m, path, body, h);
    ASSERT_TRUE(r.ok()) << label;
    EXPECT_EQ(r->status, row.status) << label << "\n" << r->body.substr(0, 400);
    if (row.must_have) {
      EXPECT_NE(r->body.find(row.must_have), std::string::npos) << label;
    }
    if (row.must_not_have) {
      EXPECT_EQ(r->body.find(row.must_not_have), std::string::npos) << label;
    }
    if (r->status >= 400) {
      EXPECT_NE(r->body.find("OperationOutcome"), std::string::npos) << label;
      // Refusals explain without leaking: no key material, no other patient's data.
      EXPECT_EQ(r->body.find("BEGIN"), std::string::npos) << label;
    }
    if (r->status == 401) {
      EXPECT_FALSE(r->Header("WWW-Authenticate").empty()) << label;
    }
  }
}

TEST_P(AuthTest, SessionUridSelectsTheRole) {
  std::string t = Token({"--user", "Practitioner/g1", "--role", "R8000", "--org", "A81001",
                         "--urpid", "555254240100"});
  http::Client c(server_->base());
  http::Headers h{{"Authorization", "Bearer " + t}};
  h.emplace_back("NHSD-Session-URID", "555254240100");
  EXPECT_EQ(c.Send("GET", "/fhir/Observation/oA", "", h)->status, 200);
  h.back().second = "999";
  auto r = c.Send("GET", "/fhir/Observation/oA", "", h);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("NHSD-Session-URID"), std::string::npos);
}

TEST_P(AuthTest, BreakGlassRaisesAnAlertThatAPrivacyOfficerAcknowledges) {
  std::string gp = Token({"--user", "Practitioner/bg", "--role", "R8000", "--org", "A81001"});
  std::string po = Token({"--user", "po2", "--role", "R0001", "--org", "A81001"});
  http::Client c(server_->base());
  auto r = c.Send("GET", "/fhir/Observation/oB", "",
                  {{"Authorization", "Bearer " + gp},
                   {"Taproot-Break-Glass", "emergency collapsed in clinic"}});
  ASSERT_EQ(r->status, 200);
  auto alerts = c.Send("GET", "/fhir/AuditEvent?alert=open&agent=Practitioner/bg", "",
                       {{"Authorization", "Bearer " + po}});
  ASSERT_EQ(alerts->status, 200);
  auto doc = ParseJson(alerts->body);
  auto& entries = doc->at("entry").as_array();
  ASSERT_EQ(entries.size(), 1u) << alerts->body;
  const auto& ev = entries[0].at("resource").as_object();
  EXPECT_NE(alerts->body.find("emergency: collapsed in clinic"), std::string::npos);
  EXPECT_NE(alerts->body.find("ETREAT"), std::string::npos);
  EXPECT_NE(alerts->body.find("Patient/pB"), std::string::npos);
  std::string id(ev.at("id").as_string());
  // A clinician cannot acknowledge; the privacy officer can, once.
  EXPECT_EQ(c.Send("POST", "/fhir/AuditEvent/" + id + "/$acknowledge", "",
                   {{"Authorization", "Bearer " + gp}})
                ->status,
            403);
  EXPECT_EQ(c.Send("POST", "/fhir/AuditEvent/" + id + "/$acknowledge", "",
                   {{"Authorization", "Bearer " + po}})
                ->status,
            200);
  EXPECT_EQ(c.Send("POST", "/fhir/AuditEvent/" + id + "/$acknowledge", "",
                   {{"Authorization", "Bearer " + po}})
                ->status,
            409);
  auto open = c.Send("GET", "/fhir/AuditEvent?alert=open&agent=Practitioner/bg", "",
                     {{"Authorization", "Bearer " + po}});
  EXPECT_EQ(ParseJson(open->body)->at("entry").as_array().size(), 0u);
}

TEST_P(AuthTest, EveryAccessIsAuditedAndTheChainVerifies) {
  std::string gp = Token({"--user", "Practitioner/aud", "--role", "R8000", "--org", "A81001"});
  std::string po = Token({"--user", "po3", "--role", "R0001", "--org", "A81001"});
  http::Client c(server_->base());
  http::Headers h{{"Authorization", "Bearer " + gp}};
  EXPECT_EQ(c.Send("GET", "/fhir/Observation?subject=Patient/pA", "", h)->status, 200);
  EXPECT_EQ(c.Send("GET", "/fhir/Observation/oB", "", h)->status, 403);
  auto trail = c.Send("GET", "/fhir/AuditEvent?agent=Practitioner/aud", "",
                      {{"Authorization", "Bearer " + po}});
  ASSERT_EQ(trail->status, 200);
  auto doc = ParseJson(trail->body);
  const auto& entries = doc->at("entry").as_array();
  ASSERT_EQ(entries.size(), 2u) << trail->body;
  // Newest first: the denied read, then the search with the patient it touched.
  const auto& denied = entries[0].at("resource").as_object();
  EXPECT_EQ(denied.at("outcome").as_string(), "4");
  EXPECT_EQ(denied.at("subtype").at(0).at("code").as_string(), "read");
  const auto& search = entries[1].at("resource").as_object();
  EXPECT_EQ(search.at("outcome").as_string(), "0");
  EXPECT_EQ(search.at("subtype").at(0).at("code").as_string(), "search");
  EXPECT_NE(serialize(search).find("Patient/pA"), std::string::npos);
  EXPECT_NE(serialize(search).find("A81001"), std::string::npos);
  // Unauthenticated attempts are audited too.
  EXPECT_EQ(c.Send("GET", "/fhir/Patient/pA")->status, 401);
  auto by_patient = c.Send("GET", "/fhir/AuditEvent?patient=pA&_count=500", "",
                           {{"Authorization", "Bearer " + po}});
  EXPECT_NE(by_patient->body.find("Practitioner/aud"), std::string::npos);
  std::string cmd = std::string(TAPROOT_BINARY) + " audit verify --data " + server_->data_dir();
  EXPECT_EQ(std::system((cmd + " > /dev/null").c_str()), 0);
}

TEST(AuthServerTest, InsecureDevIsAnnounced) {
  TestServer server;  // --insecure-dev
  ASSERT_TRUE(server.Start());
  http::Client c(server.base());
  auto r = c.Send("GET", "/fhir/Patient");
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->Header("Taproot-Insecure-Dev").empty());
  EXPECT_NE(server.log().find("AUTHENTICATION IS OFF"), std::string::npos);
}

TEST_P(AuthTest, SmartDiscoveryAndSecurityHeaders) {
  http::Client c(server_->base());
  auto conf = c.Send("GET", "/fhir/.well-known/smart-configuration");
  ASSERT_EQ(conf->status, 200);
  auto doc = ParseJson(conf->body);
  EXPECT_EQ(doc->at("issuer").as_string(), "urn:taproot:local");
  auto jwks = c.Send("GET", "/.well-known/jwks.json");
  ASSERT_EQ(jwks->status, 200);
  EXPECT_EQ(jwks->body.find("\"d\""), std::string::npos);  // public halves only
  auto r = c.Send("GET", "/fhir/Patient");
  EXPECT_EQ(r->Header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r->Header("Cache-Control"), "no-store");
}

}  // namespace
}  // namespace taproot

namespace taproot {
namespace {

// Consent: dissent from sharing, the national data opt-out and explicit grants of V records.
class ConsentTest : public ::testing::TestWithParam<testing::Backend> {
 protected:
  void SetUp() override {
    bool fresh = false;
    server_ = StartWorld(worlds_[GetParam()], GetParam(), &fresh);
    ASSERT_NE(server_, nullptr) << worlds_[GetParam()].server->log();
    sys_ = server_->Token({"--user", "loader", "--scope", "system/*.cruds"});
    if (fresh) Load();
  }
  static void Load() {
    sys_ = server_->Token({"--user", "loader", "--scope", "system/*.cruds"});
    const std::string conf = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
    const std::string scope = "http://terminology.hl7.org/CodeSystem/consentscope";
    Put("Organization/orgA",
        R"({"resourceType":"Organization","id":"orgA","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}]})");
    Put("Organization/orgB",
        R"({"resourceType":"Organization","id":"orgB","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"B82002"}]})");
    for (const char* p : {"pC", "pD", "pE"}) {
      Put(std::string("Patient/") + p,
          std::string(R"({"resourceType":"Patient","id":")") + p +
              R"(","generalPractitioner":[{"reference":"Organization/orgA"}]})");
      Put(std::string("Encounter/e") + p,
          std::string(R"({"resourceType":"Encounter","id":"e)") + p +
              R"(","status":"in-progress","class":{"code":"IMP"},"subject":{"reference":"Patient/)" +
              p + R"("},"serviceProvider":{"reference":"Organization/orgB"}})");
      Put(std::string("Observation/o") + p,
          std::string(R"({"resourceType":"Observation","id":"o)") + p +
              R"(","status":"final","code":{"text":"hr"},"subject":{"reference":"Patient/)" + p +
              R"("}})");
    }
    // pC dissents from sharing outside orgA.
    Put("Consent/dissent",
        R"({"resourceType":"Consent","id":"dissent","status":"active","scope":{"coding":[{"system":")" +
            scope +
            R"(","code":"patient-privacy"}]},"category":[{"text":"sharing"}],"patient":{"reference":"Patient/pC"},"organization":[{"reference":"Organization/orgA"}],"provision":{"type":"deny"}})");
    // pD has opted out of secondary use.
    Put("Consent/optout",
        R"({"resourceType":"Consent","id":"optout","status":"active","scope":{"coding":[{"system":")" +
            scope +
            R"(","code":"research"}]},"category":[{"text":"national data opt-out"}],"patient":{"reference":"Patient/pD"},"provision":{"type":"deny"}})");
    // pE has a very restricted record, granted to one practitioner only.
    Put("Observation/oV",
        R"({"resourceType":"Observation","id":"oV","meta":{"security":[{"system":")" + conf +
            R"(","code":"V"}]},"status":"final","code":{"text":"v"},"subject":{"reference":"Patient/pE"}})");
    Put("Consent/grant",
        R"({"resourceType":"Consent","id":"grant","status":"active","scope":{"coding":[{"system":")" +
            scope +
            R"(","code":"patient-privacy"}]},"category":[{"text":"grant"}],"patient":{"reference":"Patient/pE"},"provision":{"type":"permit","provision":[{"type":"permit","actor":[{"role":{"text":"grantee"},"reference":{"reference":"Practitioner/granted"}}],"securityLabel":[{"system":")" +
            conf + R"(","code":"V"}]}]}})");
  }
  static void TearDownTestSuite() {
    worlds_.clear();
    server_ = nullptr;
  }
  static void Put(const std::string& path, const std::string& body) {
    http::Client c(server_->base());
    auto r =
        c.Send("PUT", "/fhir/" + path, body,
               {{"Authorization", "Bearer " + sys_}, {"Content-Type", "application/fhir+json"}});
    ASSERT_TRUE(r.ok());
    ASSERT_LT(r->status, 300) << path << ": " << r->body;
  }
  static int Get(const std::string& token, const std::string& path, std::string* body = nullptr,
                 const char* header = nullptr, const char* value = nullptr) {
    http::Client c(server_->base());
    http::Headers h{{"Authorization", "Bearer " + token}};
    if (header) h.emplace_back(header, value);
    auto r = c.Send("GET", path, "", h);
    if (body) *body = r->body;
    return r->status;
  }
  static testing::TestServer* server_;
  static std::string sys_;
  static std::map<testing::Backend, World> worlds_;
};
testing::TestServer* ConsentTest::server_ = nullptr;
std::string ConsentTest::sys_;
std::map<testing::Backend, World> ConsentTest::worlds_;
INSTANTIATE_TEST_SUITE_P(Backends, ConsentTest,
                         ::testing::Values(testing::Backend::kSqlite, testing::Backend::kPostgres),
                         testing::BackendName);

TEST_P(ConsentTest, DissentKeepsTheRecordWithTheCustodianUnlessBreakGlass) {
  std::string gpA =
      server_->Token({"--user", "Practitioner/a", "--role", "R8000", "--org", "A81001"});
  std::string gpB =
      server_->Token({"--user", "Practitioner/b", "--role", "R8000", "--org", "B82002"});
  EXPECT_EQ(Get(gpA, "/fhir/Observation/opC"), 200);  // the custodian
  EXPECT_EQ(Get(gpB, "/fhir/Observation/opD"), 200);  // a relationship, no dissent
  EXPECT_EQ(Get(gpB, "/fhir/Observation/opC"), 403);  // a relationship, but dissent
  EXPECT_EQ(Get(gpB, "/fhir/Observation/opC", nullptr, "Taproot-Break-Glass", "emergency"), 200);
  EXPECT_EQ(Get(sys_, "/fhir/Observation/opC"), 403);  // a system outside the custodian too
  std::string body;
  EXPECT_EQ(Get(gpB, "/fhir/Observation?_summary=count", &body), 200);
  EXPECT_NE(body.find("\"total\":2"), std::string::npos) << body;  // opD and opE, not opC
}

TEST_P(ConsentTest, NationalOptOutRemovesThePatientFromSecondaryUseOnly) {
  std::string research =
      server_->Token({"--user", "analyst", "--scope", "system/*.rs", "--purpose", "HRESCH"});
  std::string care =
      server_->Token({"--user", "Practitioner/b", "--role", "R8000", "--org", "B82002"});
  std::string body;
  EXPECT_EQ(Get(research, "/fhir/Observation?code:text=hr&_count=50", &body), 200);
  EXPECT_EQ(body.find("\"id\":\"opD\""), std::string::npos) << body;
  EXPECT_NE(body.find("\"id\":\"opE\""), std::string::npos) << body;
  EXPECT_EQ(Get(research, "/fhir/Observation/opD"), 403);
  EXPECT_EQ(Get(research, "/fhir/Observation?code:text=hr&_summary=count", &body), 200);
  // opC (dissent: not shared with a system) and opD (opted out) are not counted.
  EXPECT_NE(body.find("\"total\":1"), std::string::npos) << body;
  // Direct care is not touched by the opt-out.
  EXPECT_EQ(Get(care, "/fhir/Observation/opD"), 200);
}

TEST_P(ConsentTest, VeryRestrictedRecordsNeedAnExplicitGrant) {
  std::string granted =
      server_->Token({"--user", "Practitioner/granted", "--role", "R8000", "--org", "B82002"});
  std::string other =
      server_->Token({"--user", "Practitioner/other", "--role", "R8000", "--org", "B82002"});
  EXPECT_EQ(Get(granted, "/fhir/Observation/oV"), 200);
  EXPECT_EQ(Get(other, "/fhir/Observation/oV"), 403);
  EXPECT_EQ(Get(other, "/fhir/Observation/oV", nullptr, "Taproot-Break-Glass", "emergency"), 403);
  EXPECT_EQ(Get(sys_, "/fhir/Observation/oV"), 403);
  EXPECT_EQ(Get(other, "/fhir/Observation/opE"), 200);  // the rest of the record is open
}

}  // namespace
}  // namespace taproot

namespace taproot {
namespace {

// The built-in token endpoint: a registered client authenticates with a signed assertion and
// gets an access token the FHIR API accepts.
class TokenEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / ("taproot-clients-" + NewUuid())).string();
    std::filesystem::create_directories(dir_);
    client_key_ = *auth::Jwk::GenerateP256();
    auth::Jwks pub;
    pub.keys.push_back(client_key_);
    { std::ofstream(dir_ + "/client.jwks.json") << pub.ToJson(); }
    {
      std::ofstream(dir_ + "/clients.toml")
          << "[[client]]\nclient_id = \"lab-system\"\njwks_file = \"" << dir_
          << "/client.jwks.json\"\nscopes = [\"system/Observation.cruds\", "
             "\"system/Patient.rs\"]\n";
    }
    server_ = std::make_unique<testing::TestServer>(
        std::string(),
        std::vector<std::string>{"--clients", dir_ + "/clients.toml", "--rate-limit", "0"},
        /*secure=*/true);
    ASSERT_TRUE(server_->Start()) << server_->log();
    endpoint_ = "http://127.0.0.1:" + std::to_string(server_->port()) + "/oauth2/token";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Assertion(json::object overrides = {}, const auth::Jwk* key = nullptr) {
    int64_t now = std::time(nullptr);
    json::object c{{"iss", "lab-system"},
                   {"sub", "lab-system"},
                   {"aud", endpoint_},
                   {"exp", now + 120},
                   {"jti", NewUuid()}};
    for (auto& kv : overrides) c[kv.key()] = kv.value();
    return *auth::SignJws(key ? *key : client_key_, auth::Alg::kES256, SerializeJson(c));
  }
  Result<http::HttpResponse> Post(const std::string& assertion, const std::string& scope = "") {
    http::Client c(server_->base());
    std::string form =
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
        "client-assertion-type%3Ajwt-bearer&client_assertion=" +
        assertion + (scope.empty() ? "" : "&scope=" + scope);
    return c.Send("POST", "/oauth2/token", form,
                  {{"Content-Type", "application/x-www-form-urlencoded"}});
  }

  std::string dir_;
  auth::Jwk client_key_;
  std::unique_ptr<testing::TestServer> server_;
  std::string endpoint_;
};

TEST_F(TokenEndpointTest, ClientCredentialsWithASignedAssertion) {
  std::string assertion = Assertion();
  auto r = Post(assertion, "system%2FPatient.rs");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  auto doc = ParseJson(r->body);
  std::string token(doc->at("access_token").as_string());
  EXPECT_EQ(doc->at("token_type").as_string(), "bearer");
  EXPECT_EQ(doc->at("scope").as_string(), "system/Patient.rs");
  http::Client c(server_->base());
  EXPECT_EQ(c.Send("GET", "/fhir/Patient", "", {{"Authorization", "Bearer " + token}})->status,
            200);
  // The scopes granted are the limit: Observation was not asked for.
  EXPECT_EQ(c.Send("GET", "/fhir/Observation", "", {{"Authorization", "Bearer " + token}})->status,
            403);
  // Replaying the assertion is refused.
  auto replay = Post(assertion);
  EXPECT_EQ(replay->status, 400);
  EXPECT_NE(replay->body.find("replay"), std::string::npos) << replay->body;
  // Discovery names the endpoint.
  auto conf = c.Send("GET", "/fhir/.well-known/smart-configuration");
  EXPECT_NE(conf->body.find("/oauth2/token"), std::string::npos);
  EXPECT_NE(conf->body.find("private_key_jwt"), std::string::npos);
}

TEST_F(TokenEndpointTest, BadAssertionsAreRefused) {
  auth::Jwk stranger = *auth::Jwk::GenerateP256();
  struct Case {
    const char* name;
    std::string assertion;
    std::string scope;
    const char* error;
  };
  int64_t now = std::time(nullptr);
  std::vector<Case> cases = {
      {"unregistered", Assertion({{"iss", "nobody"}, {"sub", "nobody"}}), "", "invalid_client"},
      {"wrong key", Assertion({}, &stranger), "", "invalid_client"},
      {"wrong audience", Assertion({{"aud", "https://elsewhere/token"}}), "", "invalid_client"},
      {"expired", Assertion({{"exp", now - 600}}), "", "invalid_client"},
      {"too long lived", Assertion({{"exp", now + 3600}}), "", "invalid_client"},
      {"sub differs", Assertion({{"sub", "someone-else"}}), "", "invalid_client"},
      {"scope beyond registration", Assertion(), "system%2F*.cruds", "invalid_scope"},
  };
  for (const Case& c : cases) {
    auto r = Post(c.assertion, c.scope);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 400) << c.name << ": " << r->body;
    EXPECT_NE(r->body.find(c.error), std::string::npos) << c.name << ": " << r->body;
  }
  http::Client h(server_->base());
  auto wrong_grant = h.Send("POST", "/oauth2/token", "grant_type=password&username=a",
                            {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_NE(wrong_grant->body.find("unsupported_grant_type"), std::string::npos);
}

TEST(RateLimitTest, ABurstBeyondTheLimitGets429WithRetryAfter) {
  testing::TestServer server({}, {"--rate-limit", "5"}, /*secure=*/true);
  ASSERT_TRUE(server.Start()) << server.log();
  std::string t = server.Token({"--user", "app", "--scope", "system/*.rs"});
  std::string other = server.Token({"--user", "app2", "--scope", "system/*.rs"});
  http::Client c(server.base());
  int ok = 0, throttled = 0;
  std::string retry_after;
  for (int i = 0; i < 30; ++i) {
    auto r = c.Send("GET", "/fhir/Patient", "", {{"Authorization", "Bearer " + t}});
    if (r->status == 200) ++ok;
    if (r->status == 429) {
      ++throttled;
      retry_after = r->Header("Retry-After");
      EXPECT_NE(r->body.find("throttled"), std::string::npos);
    }
  }
  EXPECT_GE(ok, 10);  // the burst
  EXPECT_LT(ok, 20);
  EXPECT_GT(throttled, 0);
  EXPECT_FALSE(retry_after.empty());
  // Another client has its own bucket.
  EXPECT_EQ(c.Send("GET", "/fhir/Patient", "", {{"Authorization", "Bearer " + other}})->status,
            200);
}

}  // namespace
}  // namespace taproot
