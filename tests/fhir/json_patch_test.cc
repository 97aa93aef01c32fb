#include "fhir/json_patch.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "common/json.h"

namespace taproot::fhir {
namespace {

json::value P(const char* text) { return *ParseJson(text); }

// The RFC 6902 cases from FHIR's test suite: each has an expected document or an error.
TEST(JsonPatchTest, FhirTestCases) {
  std::ifstream in(std::string(TAPROOT_SOURCE_DIR) + "/tests/fixtures/json-patch-tests.json");
  std::stringstream ss;
  ss << in.rdbuf();
  json::value cases = *ParseJson(ss.str());
  int run = 0;
  for (const auto& c : cases.as_array()) {
    const json::object& o = c.as_object();
    if (o.contains("disabled")) continue;
    std::string name(o.contains("comment") ? o.at("comment").as_string() : "case");
    auto result = ApplyJsonPatch(o.at("doc"), o.at("patch"));
    if (o.contains("error")) {
      EXPECT_FALSE(result.ok()) << name;
    } else if (o.contains("expected")) {
      ASSERT_TRUE(result.ok()) << name << ": " << result.status().ToString();
      EXPECT_EQ(*result, o.at("expected")) << name;
    }
    ++run;
  }
  EXPECT_GE(run, 14);
}

TEST(JsonPatchTest, AllOrNothing) {
  json::value doc = P(R"({"a":1,"b":[1,2]})");
  auto r = ApplyJsonPatch(doc, P(R"([{"op":"replace","path":"/a","value":2},
                                     {"op":"remove","path":"/missing"}])"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("operation 1"), std::string::npos);
  EXPECT_EQ(doc, P(R"({"a":1,"b":[1,2]})"));  // untouched
}

TEST(JsonPatchTest, Operations) {
  json::value doc = P(R"({"a":{"b":1},"arr":[1,2,3],"k~/":0})");
  auto r = ApplyJsonPatch(doc, P(R"([
    {"op":"add","path":"/arr/1","value":9},
    {"op":"add","path":"/arr/-","value":4},
    {"op":"move","from":"/a/b","path":"/c"},
    {"op":"copy","from":"/c","path":"/d"},
    {"op":"test","path":"/k~0~1","value":0},
    {"op":"remove","path":"/arr/0"}])"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, P(R"({"a":{},"arr":[9,2,3,4],"k~/":0,"c":1,"d":1})"));
  EXPECT_FALSE(ApplyJsonPatch(doc, P(R"([{"op":"test","path":"/a/b","value":2}])")).ok());
  EXPECT_FALSE(ApplyJsonPatch(doc, P(R"([{"op":"move","from":"/a","path":"/a/x"}])")).ok());
  EXPECT_FALSE(ApplyJsonPatch(doc, P(R"([{"op":"add","path":"/arr/7","value":1}])")).ok());
  EXPECT_FALSE(ApplyJsonPatch(doc, P(R"({"op":"add"})")).ok());
}

}  // namespace
}  // namespace taproot::fhir
