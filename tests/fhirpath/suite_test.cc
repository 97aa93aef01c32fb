// The official FHIRPath R4 test suite (tests/fixtures/fhirpath/tests-fhir-r4.xml), run against
// the JSON forms of its input files. Prints every failure and the pass count, and fails if the
// count drops below the recorded floor: the floor only ever goes up as the engine completes.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <pugixml.hpp>

#include "common/json.h"
#include "fhirpath/engine.h"
#include "test_util.h"

namespace taproot::fhirpath {
namespace {

namespace fs = std::filesystem;

// Every test of the suite passes; a change that breaks one fails this test.
constexpr int kPassFloor = 935;

TEST(FhirPathSuiteTest, OfficialR4Suite) {
  fs::path dir = fs::path(TAPROOT_SOURCE_DIR) / "tests/fixtures/fhirpath";
  pugi::xml_document doc;
  ASSERT_TRUE(doc.load_file((dir / "tests-fhir-r4.xml").c_str()));
  std::map<std::string, json::value> inputs;
  int total = 0, passed = 0;
  std::string failures;
  for (auto group : doc.child("tests").children("group")) {
    for (auto test : group.children("test")) {
      ++total;
      std::string name = test.attribute("name").as_string();
      std::string input = test.attribute("inputfile").as_string();
      std::string expr_text = test.child_value("expression");
      std::string invalid = test.child("expression").attribute("invalid").as_string();
      bool predicate = std::string(test.attribute("predicate").as_string()) == "true";
      json::value resource;
      if (!input.empty()) {
        std::string json_name = input.substr(0, input.rfind('.')) + ".json";
        auto it = inputs.find(json_name);
        if (it == inputs.end()) {
          auto parsed = ParseJson(testing::ReadFileText(dir / json_name));
          ASSERT_TRUE(parsed.ok()) << json_name;
          it = inputs.emplace(json_name, std::move(parsed).value()).first;
        }
        resource = it->second;
      }
      EvalOptions options;
      options.strict = std::string(test.attribute("mode").as_string()) == "strict";
      options.check_ordered_functions = test.attribute("checkOrderedFunctions").as_bool();
      auto compiled = Compile(expr_text);
      Result<Collection> result = compiled.ok() ? (*compiled)->Evaluate(resource, options)
                                                : Result<Collection>(compiled.status());
      bool ok = false;
      std::string got;
      if (!invalid.empty()) {
        ok = !result.ok();
        got = result.ok() ? "no error" : "error";
      } else if (result.ok()) {
        std::vector<std::string> expected;
        for (auto out : test.children("output")) expected.push_back(out.text().as_string());
        std::vector<std::string> actual;
        if (predicate) {
          actual.push_back(result->empty() ? "false" : "true");
        } else {
          for (const Item& i : *result) actual.push_back(ItemToString(i));
        }
        ok = actual == expected;
        for (auto& a : actual) got += "[" + a + "]";
        if (!ok) {
          got += " expected ";
          for (auto& x : expected) got += "[" + x + "]";
        }
      } else {
        got = result.status().message();
      }
      if (ok) {
        ++passed;
      } else {
        failures += "  " + name + ": " + expr_text + " -> " + got + "\n";
      }
    }
  }
  std::printf("FHIRPath R4 suite: %d of %d tests pass\n", passed, total);
  std::printf("failures:\n%s", failures.c_str());
  EXPECT_EQ(total, 935);
  EXPECT_GE(passed, kPassFloor) << "a change made previously passing FHIRPath tests fail";
}

}  // namespace
}  // namespace taproot::fhirpath
