// Round trip: every official R4 example, written with its own id, reads back JSON-equal apart
// from meta.versionId and meta.lastUpdated (which the server owns).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine_fixture.h"
#include "test_util.h"

namespace taproot::api {
namespace {

json::value WithoutServerMeta(json::value v) {
  json::object& o = v.as_object();
  if (auto* meta = o.if_contains("meta")) {
    meta->as_object().erase("versionId");
    meta->as_object().erase("lastUpdated");
    if (meta->as_object().empty()) o.erase("meta");
  }
  return v;
}

TEST_P(EngineTest, AllR4ExamplesRoundTrip) {
  std::filesystem::path dir = std::filesystem::path(TAPROOT_FIXTURES) / "examples";
  int count = 0;
  std::vector<std::string> failures;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string text = testing::ReadFileText(entry.path());
    json::value original = *ParseJson(text);
    std::string type(original.at("resourceType").as_string());
    std::string id(original.at("id").as_string());
    FhirResponse put = Do("PUT", type + "/" + id, text);
    if (put.status != 201 && put.status != 200) {
      failures.push_back(entry.path().filename().string() + ": PUT " + std::to_string(put.status) +
                         " " + Diagnostics(put));
      continue;
    }
    FhirResponse get = Do("GET", type + "/" + id);
    if (WithoutServerMeta(Body(get)) != WithoutServerMeta(original)) {
      failures.push_back(entry.path().filename().string() + ": differs after read");
    }
    ++count;
  }
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed; first: " << failures.front();
  EXPECT_EQ(count, 796);
}

}  // namespace
}  // namespace taproot::api
