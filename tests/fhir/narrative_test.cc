// Narrative XHTML rules (FHIR R4 txt-1) and FHIRPath htmlChecks().
#include "fhir/narrative.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <functional>

#include "common/json.h"
#include "fhirpath/engine.h"
#include "test_util.h"

namespace taproot::fhir {
namespace {

const std::string kOpen = R"(<div xmlns="http://www.w3.org/1999/xhtml">)";

TEST(NarrativeTest, AcceptsBasicFormatting) {
  EXPECT_EQ(
      CheckNarrative(kOpen + "<p>Ada <b>Lovelace</b></p><table><tr><td>1</td></tr></table>"
                             "<a href=\"#x\">x</a><img src=\"#pic\"/><span style=\"color:red\">"
                             "r</span></div>"),
      "");
  EXPECT_EQ(CheckNarrative(R"(<x:div xmlns:x="http://www.w3.org/1999/xhtml"><x:p>a</x:p></x:div>)"),
            "");
}

TEST(NarrativeTest, RejectsWhatTheSpecForbids) {
  EXPECT_NE(CheckNarrative(kOpen + "<script>alert(1)</script></div>"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<p onclick=\"x()\">a</p></div>"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<a href=\" JavaScript:x()\">a</a></div>"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<form><input/></form></div>"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<iframe src=\"http://x\"></iframe></div>"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<object/></div>"), "");
  EXPECT_NE(CheckNarrative("<div><p>no namespace</p></div>"), "");
  EXPECT_NE(CheckNarrative(R"(<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>)"), "");
  EXPECT_NE(CheckNarrative(kOpen + "<p>unclosed</div>"), "");
  const std::string onload = R"x(<div xmlns="http://www.w3.org/1999/xhtml" onload="x()">a</div>)x";
  EXPECT_NE(CheckNarrative(onload), "");
}

// Every narrative in the official R4 examples meets the rules, through FHIRPath's htmlChecks().
TEST(NarrativeTest, OfficialExamplesPassHtmlChecks) {
  auto expr = fhirpath::Compile("descendants().ofType(Narrative).all(div.htmlChecks())");
  auto any = fhirpath::Compile("descendants().ofType(Narrative).exists()");
  ASSERT_TRUE(expr.ok() && any.ok());
  std::filesystem::path dir = std::filesystem::path(TAPROOT_FIXTURES) / "examples";
  int with_narrative = 0;
  std::vector<std::string> failures;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto doc = ParseJson(testing::ReadFileText(entry.path()));
    ASSERT_TRUE(doc.ok());
    auto has = (*any)->Evaluate(*doc);
    if (!has.ok() || has->empty() || !has->front().boolean) continue;
    ++with_narrative;
    auto r = (*expr)->Evaluate(*doc);
    if (!r.ok() || r->size() != 1 || !r->front().boolean) {
      failures.push_back(entry.path().filename().string());
    }
  }
  EXPECT_GT(with_narrative, 700);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first " << failures.front();
}

}  // namespace
}  // namespace taproot::fhir
