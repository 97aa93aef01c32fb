#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine_fixture.h"

namespace taproot::api {
namespace {

TAPROOT_BOTH_BACKENDS(EngineTest);

const char* kPatient =
    R"({"resourceType":"Patient","identifier":[{"system":"urn:nhs","value":"9000000009"}],"name":[{"family":"Smith"}]})";

TEST_P(EngineTest, CreateReadVreadUpdateDelete) {
  FhirResponse c = Do("POST", "Patient", kPatient);
  ASSERT_EQ(c.status, 201) << c.body;
  json::value created = Body(c);
  std::string id(created.at("id").as_string());
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(created.at("meta").at("versionId"), "1");
  EXPECT_EQ(Header(c, "ETag"), "W/\"1\"");
  EXPECT_EQ(Header(c, "Location"), "http://test/fhir/Patient/" + id + "/_history/1");
  EXPECT_FALSE(Header(c, "Last-Modified").empty());

  FhirResponse r = Do("GET", "Patient/" + id);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r), created);

  json::value updated = created;
  updated.as_object()["gender"] = "female";
  FhirResponse u = Do("PUT", "Patient/" + id, json::serialize(updated));
  ASSERT_EQ(u.status, 200) << u.body;
  EXPECT_EQ(Body(u).at("meta").at("versionId"), "2");
  EXPECT_EQ(Body(Do("GET", "Patient/" + id + "/_history/1")), created);
  EXPECT_EQ(Body(Do("GET", "Patient/" + id)).at("gender"), "female");

  EXPECT_EQ(Do("DELETE", "Patient/" + id).status, 204);
  FhirResponse gone = Do("GET", "Patient/" + id);
  EXPECT_EQ(gone.status, 410);
  EXPECT_EQ(Body(gone).at("resourceType"), "OperationOutcome");
  EXPECT_EQ(Do("GET", "Patient/" + id + "/_history/3").status, 410);  // the tombstone
  EXPECT_EQ(Do("GET", "Patient/" + id + "/_history/2").status, 200);  // history is kept
  EXPECT_EQ(Do("GET", "Patient/nope").status, 404);
  EXPECT_EQ(Do("DELETE", "Patient/" + id).status, 204);  // idempotent, no new version
  EXPECT_EQ(Do("GET", "Patient/" + id + "/_history/4").status, 404);
}

TEST_P(EngineTest, CreateOnUpdateWithClientId) {
  FhirResponse r = Do("PUT", "Patient/my-id", R"({"resourceType":"Patient","id":"my-id"})");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(Do("PUT", "Patient/my-id", R"({"resourceType":"Patient","id":"my-id"})").status, 200);
}

TEST_P(EngineTest, BadInputIsRejectedAndNothingIsStored) {
  struct Case {
    std::string method, target, body;
    int status;
    std::string where;  // expected expression of the first issue
  } cases[] = {
      {"POST", "Patient", "{not json", 400, ""},
      {"POST", "Patient", R"({"resourceType":"Patient","foo":1})", 400, "Patient.foo"},
      {"POST", "Patient", R"({"resourceType":"Patient","active":"true"})", 400, "Patient.active"},
      {"POST", "Patient", R"({"resourceType":"Patient","birthDate":"1999-02-30"})", 400,
       "Patient.birthDate"},
      {"POST", "Patient", R"({"resourceType":"Observation","status":"final"})", 400,
       "resourceType"},
      {"POST", "Nonsense", R"({"resourceType":"Nonsense"})", 404, ""},
      {"POST", "Patient", R"({"resourceType":"Patient","id":"bad id!"})", 400, "Patient.id"},
      {"PUT", "Patient/abc", R"({"resourceType":"Patient","id":"xyz"})", 400, "Patient.id"},
      {"PUT", "Patient/abc", R"({"resourceType":"Patient"})", 400, "id"},
      {"PUT", "Patient/bad$id", R"({"resourceType":"Patient","id":"bad$id"})", 400, ""},
      {"POST", "Patient", "[]", 400, ""},
      {"POST", "Patient", "", 400, ""},
  };
  for (const Case& c : cases) {
    FhirResponse r = Do(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    json::value oo = Body(r);
    ASSERT_TRUE(oo.is_object()) << r.body;
    EXPECT_EQ(oo.at("resourceType"), "OperationOutcome");
    if (!c.where.empty()) {
      EXPECT_EQ(oo.at("issue").at(0).at("expression").at(0), c.where.c_str()) << r.body;
    }
  }
  EXPECT_EQ(Total("_history"), 0);
  EXPECT_EQ(Do("POST", "Patient", kPatient, {{"content-type", "application/fhir+xml"}}).status,
            415);
  EXPECT_EQ(Do("GET", "Patient?_format=xml").status, 406);
}

TEST_P(EngineTest, IfMatchOptimisticLocking) {
  std::string id(Body(Do("POST", "Patient", kPatient)).at("id").as_string());
  std::string body = R"({"resourceType":"Patient","id":")" + id + R"("})";
  FhirResponse stale = Do("PUT", "Patient/" + id, body, {{"if-match", "W/\"7\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_NE(Diagnostics(stale).find("W/\"1\""), std::string::npos);
  EXPECT_EQ(Do("PUT", "Patient/" + id, body, {{"if-match", "W/\"1\""}}).status, 200);
  EXPECT_EQ(Do("PUT", "Patient/" + id, body, {{"if-match", "W/\"1\""}}).status, 412);
  EXPECT_EQ(Do("DELETE", "Patient/" + id, "", {{"if-match", "W/\"1\""}}).status, 412);
  EXPECT_EQ(Do("GET", "Patient/" + id, "", {{"if-none-match", "W/\"2\""}}).status, 304);
}

TEST_P(EngineTest, PreferReturn) {
  FhirResponse minimal = Do("POST", "Patient", kPatient, {{"prefer", "return=minimal"}});
  EXPECT_EQ(minimal.status, 201);
  EXPECT_TRUE(minimal.body.empty());
  EXPECT_FALSE(Header(minimal, "Location").empty());
  FhirResponse oo = Do("POST", "Patient", kPatient, {{"prefer", "return=OperationOutcome"}});
  EXPECT_EQ(Body(oo).at("resourceType"), "OperationOutcome");
}

TEST_P(EngineTest, ConditionalCreateUpdateDelete) {
  std::vector<std::pair<std::string, std::string>> ine = {
      {"if-none-exist", "identifier=urn:nhs|9000000009"}};
  FhirResponse first = Do("POST", "Patient", kPatient, ine);
  EXPECT_EQ(first.status, 201);
  FhirResponse second = Do("POST", "Patient", kPatient, ine);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(Body(second).at("id"), Body(first).at("id"));
  EXPECT_EQ(Total("Patient"), 1);
  // Unknown criteria are refused rather than matching everything.
  EXPECT_EQ(Do("POST", "Patient", kPatient, {{"if-none-exist", "bogus=1"}}).status, 400);

  // Conditional update: one match updates it, none creates.
  FhirResponse cu = Do(
      "PUT", "Patient?identifier=urn:nhs|9000000009",
      R"({"resourceType":"Patient","gender":"male","identifier":[{"system":"urn:nhs","value":"9000000009"}]})");
  EXPECT_EQ(cu.status, 200) << cu.body;
  EXPECT_EQ(Body(cu).at("id"), Body(first).at("id"));
  FhirResponse cc =
      Do("PUT", "Patient?identifier=urn:nhs|111",
         R"({"resourceType":"Patient","identifier":[{"system":"urn:nhs","value":"111"}]})");
  EXPECT_EQ(cc.status, 201);
  // Two matches: 412.
  Do("POST", "Patient", R"({"resourceType":"Patient","identifier":[{"value":"dup"}]})");
  Do("POST", "Patient", R"({"resourceType":"Patient","identifier":[{"value":"dup"}]})");
  EXPECT_EQ(Do("PUT", "Patient?identifier=dup", R"({"resourceType":"Patient"})").status, 412);
  EXPECT_EQ(Do("DELETE", "Patient?identifier=dup").status, 412);
  EXPECT_EQ(Do("DELETE", "Patient?identifier=urn:nhs|111").status, 204);
  EXPECT_EQ(Total("Patient?identifier=urn:nhs|111"), 0);
  EXPECT_EQ(Do("DELETE", "Patient").status, 405);
}

TEST_P(EngineTest, FiftyConcurrentConditionalCreatesMakeOne) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0}, matched{0}, other{0};
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      FhirResponse r =
          Do("POST", "Patient", kPatient, {{"if-none-exist", "identifier=urn:nhs|9000000009"}});
      (r.status == 201 ? created : r.status == 200 ? matched : other)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created, 1);
  EXPECT_EQ(matched, 49);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(Total("Patient?identifier=urn:nhs|9000000009"), 1);
}

TEST_P(EngineTest, JsonPatch) {
  std::string id(Body(Do("POST", "Patient", kPatient)).at("id").as_string());
  std::vector<std::pair<std::string, std::string>> ct = {
      {"content-type", "application/json-patch+json"}};
  FhirResponse p = Do("PATCH", "Patient/" + id,
                      R"([{"op":"add","path":"/gender","value":"female"},
                          {"op":"replace","path":"/name/0/family","value":"Jones"}])",
                      ct);
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(Body(p).at("name").at(0).at("family"), "Jones");
  EXPECT_EQ(Body(p).at("meta").at("versionId"), "2");
  // A failing op leaves nothing applied; an invalid result is refused.
  EXPECT_EQ(
      Do("PATCH", "Patient/" + id,
         R"([{"op":"replace","path":"/gender","value":"male"},{"op":"remove","path":"/x"}])", ct)
          .status,
      400);
  EXPECT_EQ(Do("PATCH", "Patient/" + id, R"([{"op":"add","path":"/gender","value":5}])", ct).status,
            422);
  EXPECT_EQ(
      Do("PATCH", "Patient/" + id, R"([{"op":"test","path":"/gender","value":"male"}])", ct).status,
      422);
  EXPECT_EQ(Do("PATCH", "Patient/" + id, "[]",
               {{"content-type", "application/json-patch+json"}, {"if-match", "W/\"1\""}})
                .status,
            412);
  EXPECT_EQ(Body(Do("GET", "Patient/" + id)).at("gender"), "female");
  EXPECT_EQ(Body(Do("GET", "Patient/" + id)).at("meta").at("versionId"), "2");
  EXPECT_EQ(Do("PATCH", "Patient/" + id, "[]").status, 415);
}

TEST_P(EngineTest, HistoryWithPagingSinceAndAt) {
  std::string id(Body(Do("POST", "Patient", kPatient)).at("id").as_string());
  std::string v1_time(Body(Do("GET", "Patient/" + id)).at("meta").at("lastUpdated").as_string());
  for (int i = 0; i < 4; ++i) {
    Do("PUT", "Patient/" + id, R"({"resourceType":"Patient","id":")" + id + R"("})");
  }
  Do("POST", "Observation",
     R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})");
  FhirResponse h = Do("GET", "Patient/" + id + "/_history?_count=2");
  ASSERT_EQ(h.status, 200);
  json::value b = Body(h);
  EXPECT_EQ(b.at("type"), "history");
  EXPECT_EQ(b.at("total"), 5);
  EXPECT_EQ(b.at("entry").as_array().size(), 2u);
  EXPECT_EQ(b.at("entry").at(0).at("resource").at("meta").at("versionId"), "5");
  EXPECT_EQ(b.at("entry").at(0).at("request").at("method"), "PUT");
  // Follow next links to the end.
  int pages = 1, entries = 2;
  json::value page = b;
  for (;;) {
    std::string next;
    for (auto& l : page.at("link").as_array())
      if (l.at("relation") == "next") next = std::string(l.at("url").as_string());
    if (next.empty()) break;
    page = Body(Do("GET", next.substr(std::string("http://test/fhir/").size())));
    entries += static_cast<int>(page.at("entry").as_array().size());
    ++pages;
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(entries, 5);
  EXPECT_EQ(Total("Patient/_history"), 5);
  EXPECT_EQ(Total("_history"), 6);
  // _since: versions at or after; _at: the one current then.
  EXPECT_EQ(Total("Patient/" + id + "/_history?_since=" + v1_time), 5);
  EXPECT_EQ(Total("Patient/" + id + "/_history?_since=2999-01-01"), 0);
  FhirResponse at = Do("GET", "Patient/" + id + "/_history?_at=" + v1_time);
  EXPECT_EQ(Body(at).at("total"), 1);
  EXPECT_EQ(Body(at).at("entry").at(0).at("resource").at("meta").at("versionId"), "1");
  EXPECT_EQ(Do("GET", "Patient/" + id + "/_history?_since=yesterday").status, 400);
  EXPECT_EQ(Do("GET", "Patient/unknown/_history").status, 404);
}

TEST_P(EngineTest, SearchBasics) {
  for (int i = 0; i < 5; ++i) {
    Do("POST", "Patient",
       R"({"resourceType":"Patient","identifier":[{"system":"s","value":")" + std::to_string(i) +
           R"("}]})");
  }
  EXPECT_EQ(Total("Patient"), 5);
  EXPECT_EQ(Total("Patient?identifier=s|1,s|3"), 2);
  EXPECT_EQ(Total("Patient?identifier=|1"), 0);
  FhirResponse page = Do("GET", "Patient?_count=2");
  EXPECT_EQ(Body(page).at("entry").as_array().size(), 2u);
  FhirResponse unknown = Do("GET", "Patient?nonsense=1");
  EXPECT_EQ(unknown.status, 200);
  json::value ub = Body(unknown);
  // The ignored parameter is reported in an outcome entry and left out of the self link.
  EXPECT_EQ(ub.at("entry").as_array().back().at("search").at("mode"), "outcome");
  EXPECT_EQ(std::string(ub.at("link").at(0).at("url").as_string()).find("nonsense"),
            std::string::npos);
  EXPECT_EQ(Do("GET", "Patient?nonsense=1", "", {{"prefer", "handling=strict"}}).status, 400);
  FhirResponse post = Do("POST", "Patient/_search", "identifier=s%7C2",
                         {{"content-type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(Body(post).at("total"), 1);
  EXPECT_EQ(Body(Do("GET", "Patient?_summary=count")).at("total"), 5);
}

TEST_P(EngineTest, RetriedWriteWithSameRequestIdIsAppliedOnce) {
  FhirResponse a = Do("POST", "Patient", kPatient, {}, "req-1");
  FhirResponse b = Do("POST", "Patient", kPatient, {}, "req-1");
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(b.status, 201);
  EXPECT_EQ(Body(a).at("id"), Body(b).at("id"));
  EXPECT_EQ(Header(b, "X-Replayed"), "true");
  EXPECT_EQ(Total("Patient"), 1);
  // Reusing the id for a different request is a conflict, not a silent replay.
  EXPECT_EQ(
      Do("POST", "Observation",
         R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})", {}, "req-1")
          .status,
      409);
}

TEST_P(EngineTest, CapabilityStatementListsWhatWorks) {
  FhirResponse r = Do("GET", "metadata");
  ASSERT_EQ(r.status, 200);
  json::value cs = Body(r);
  EXPECT_EQ(cs.at("fhirVersion"), "4.0.1");
  const json::array& resources = cs.at("rest").at(0).at("resource").as_array();
  EXPECT_EQ(resources.size(), fhir::R4().ResourceTypes().size());
  for (const auto& res : resources) {
    // Every advertised search parameter is accepted in strict mode.
    for (const auto& p : res.at("searchParam").as_array()) {
      std::string name(p.at("name").as_string());
      std::string type(p.at("type").as_string());
      std::string value = type == "date"                           ? "ge2020-01-01"
                          : type == "number" || type == "quantity" ? "5"
                          : type == "composite"                    ? "x$2020"
                                                                   : "x";
      FhirResponse s = Do("GET", std::string(res.at("type").as_string()) + "?" + name + "=" + value,
                          "", {{"prefer", "handling=strict"}});
      EXPECT_EQ(s.status, 200) << res.at("type") << " " << name << ": " << s.body;
    }
  }
}

}  // namespace
}  // namespace taproot::api
