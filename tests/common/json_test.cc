#include "common/json.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace taproot {
namespace {

TEST(JsonTest, ParseErrorsSayWhere) {
  auto r = ParseJson("{\n  \"a\": 1,\n  \"b\": }");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status().message();
}

TEST(JsonTest, DuplicateKeysAreRefused) {
  auto r = ParseJson(R"({"a":{"b":1,"c":2,"b":3}})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'b'"), std::string::npos) << r.status().message();
  // Escaped keys are compared after unescaping.
  EXPECT_FALSE(ParseJson(R"({"a\u0062":1,"ab":2})").ok());
  EXPECT_TRUE(ParseJson(R"({"\u0061":{"\u0062":1},"\u0063":2})").ok());
  // The same key in different objects is fine.
  EXPECT_TRUE(ParseJson(R"({"b":{"b":1},"c":[{"b":1},{"b":2}]})").ok());
}

TEST(JsonTest, PrettyTextKeepsStringsIntact) {
  std::string compact = R"({"a":[1,2],"b":{"c":"x, {y}: \"z\""},"e":[],"f":{}})";
  std::string pretty = PrettyJsonText(compact);
  EXPECT_NE(pretty.find("\n  \"a\": [\n    1,"), std::string::npos) << pretty;
  // Pretty output parses to the same value.
  EXPECT_EQ(*ParseJson(pretty), *ParseJson(compact));
}

}  // namespace
}  // namespace taproot
