// Every official R4 example must pass structural validation.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json.h"
#include "fhir/model.h"
#include "fhir/validator.h"
#include "test_util.h"

namespace taproot::fhir {
namespace {

TEST(ExamplesTest, AllR4ExamplesValidate) {
  std::filesystem::path dir = std::filesystem::path(TAPROOT_FIXTURES) / "examples";
  int count = 0;
  std::vector<std::string> failures;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string text = testing::ReadFileText(entry.path());
    auto doc = ParseJson(text);
    ASSERT_TRUE(doc.ok()) << entry.path();
    Status st = ValidateResource(R4(), *doc);
    if (!st.ok()) failures.push_back(entry.path().filename().string() + ": " + st.ToString());
    ++count;
  }
  EXPECT_EQ(count, 796);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed; first: " << failures.front();
}

}  // namespace
}  // namespace taproot::fhir
