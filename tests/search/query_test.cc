#include "search/query.h"

#include <gtest/gtest.h>

#include <set>

#include "common/clock.h"
#include "fhir/model.h"
#include "search/compartments.h"
#include "search/params.h"

namespace taproot::search {
namespace {

ParsedSearch Parse(const std::string& query, bool strict = false) {
  auto params = ParseQueryString(query);
  EXPECT_TRUE(params.ok());
  auto parsed = ParseSearch(fhir::R4(), "Patient", *params, strict);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? *parsed : ParsedSearch{};
}

int64_t T(const char* s) { return *ParseFhirDateTime(s); }

TEST(QueryTest, DecodesLenientlyAndStrictly) {
  auto p = ParseQueryString("identifier=http://x|1&name=a+b&enc=%7C%20&flag");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p,
            (Params{{"identifier", "http://x|1"}, {"name", "a b"}, {"enc", "| "}, {"flag", ""}}));
  EXPECT_FALSE(ParseQueryString("a=%zz").ok());
  EXPECT_FALSE(ParseQueryString("a=%4").ok());
}

TEST(QueryTest, LastUpdatedPrefixesCoverThePrecision) {
  ParsedSearch year = Parse("_lastUpdated=2024");
  EXPECT_EQ(*year.query.updated_ge, T("2024-01-01"));
  EXPECT_EQ(*year.query.updated_lt, T("2025-01-01"));
  ParsedSearch dec = Parse("_lastUpdated=eq2024-12");
  EXPECT_EQ(*dec.query.updated_lt, T("2025-01-01"));
  ParsedSearch day = Parse("_lastUpdated=gt2024-02-28");
  EXPECT_EQ(*day.query.updated_ge, T("2024-02-29"));
  ParsedSearch le = Parse("_lastUpdated=le2024-02-28T10:00:00Z");
  EXPECT_EQ(*le.query.updated_lt, T("2024-02-28T10:00:01Z"));
  ParsedSearch lt = Parse("_lastUpdated=lt2024-02-28");
  EXPECT_EQ(*lt.query.updated_lt, T("2024-02-28"));
  EXPECT_FALSE(lt.query.updated_ge.has_value());
  // Found by fuzz_query: a year with leading zeros once crashed the upper-bound computation.
  ParsedSearch early = Parse("_lastUpdated=ge0052");
  EXPECT_EQ(*early.query.updated_ge, T("0052"));
  auto bad = ParseSearch(fhir::R4(), "Patient", {{"_lastUpdated", "tomorrow"}}, false);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalid);
}

TEST(QueryTest, TokensAndUnknownParameters) {
  ParsedSearch t = Parse("identifier=s|1,|2,3&_count=5&_offset=10");
  ASSERT_EQ(t.query.clauses.size(), 1u);
  const auto& any = t.query.clauses[0].any_of;
  ASSERT_EQ(any.size(), 3u);
  EXPECT_EQ(*any[0].system, "s");
  EXPECT_EQ(any[0].value, "1");
  EXPECT_EQ(*any[1].system, "");
  EXPECT_FALSE(any[2].system.has_value());
  EXPECT_EQ(t.query.count, 5);
  EXPECT_EQ(t.query.offset, 10);
  ParsedSearch lenient = Parse("bogus=1&identifier:fuzzy=x");
  EXPECT_EQ(lenient.ignored.size(), 2u);
  EXPECT_TRUE(lenient.used.empty());
  auto strict = ParseSearch(fhir::R4(), "Patient", {{"bogus", "1"}}, true);
  EXPECT_EQ(strict.status().code(), StatusCode::kInvalid);
  EXPECT_EQ(strict.status().issues()[0].expression, "bogus");
  EXPECT_EQ(Parse("_count=100000").query.count, kMaxCount);
  EXPECT_FALSE(ParseSearch(fhir::R4(), "Patient", {{"_count", "-1"}}, false).ok());
}

}  // namespace
}  // namespace taproot::search

namespace taproot {

// Parameters that are unions of others get no rows of their own. Which ones they are is read
// off the R4 definitions here by hand: Observation's combo parameters are the value and the
// component parameters together.
TEST(QueryTest, CombinedParametersReadTheirPartsRows) {
  auto parts = [](const char* type, const char* code) {
    std::set<std::string> out;
    const search::ParamDef* def = search::R4Params().Find(type, code);
    if (def) {
      for (const auto* p : def->union_of) out.insert(p->code);
    }
    return out;
  };
  using Set = std::set<std::string>;
  EXPECT_EQ(parts("Observation", "combo-code"), (Set{"code", "component-code"}));
  EXPECT_EQ(parts("Observation", "combo-value-concept"),
            (Set{"value-concept", "component-value-concept"}));
  EXPECT_EQ(parts("Observation", "combo-value-quantity"),
            (Set{"value-quantity", "component-value-quantity"}));
  EXPECT_EQ(parts("Observation", "combo-code-value-quantity"),
            (Set{"code-value-quantity", "component-code-value-quantity"}));
  EXPECT_EQ(parts("Observation", "code"), Set{});
  EXPECT_EQ(parts("Observation", "subject"), Set{});  // never a reference
  int unions = 0;
  for (const auto& type : fhir::R4().ResourceTypes()) {
    for (const auto* p : search::R4Params().ForType(type)) unions += !p->union_of.empty();
  }
  EXPECT_EQ(unions, 6);  // the six combo-* of Observation, and nothing else in R4
}

// A bare id of a reference parameter that indexes one type only is searched as that type.
TEST(QueryTest, BareIdsOfSingleTypeReferencesAreTyped) {
  auto only = [](const char* type, const char* code) {
    const search::ParamDef* def = search::R4Params().Find(type, code);
    return def ? def->only_target : std::string("?");
  };
  // R4: clinical-patient targets Patient and Group, but its expressions keep Patient only.
  EXPECT_EQ(only("Observation", "patient"), "Patient");
  EXPECT_EQ(only("Encounter", "patient"), "Patient");
  EXPECT_EQ(only("Observation", "subject"), "");           // Patient, Group, Device, Location
  EXPECT_EQ(only("Observation", "specimen"), "Specimen");  // one target
  EXPECT_EQ(only("Observation", "encounter"), "");         // Encounter and EpisodeOfCare
}

TEST(QueryTest, ReferencesThatKeyRowsToTheirPatient) {
  // R4's Patient CompartmentDefinition and element cardinalities: Observation's first link is
  // subject (0..1), Condition's is patient (subject restricted to Patient, 1..1), Account's is
  // subject (0..*: a resource may name several, so the key is only the first of them).
  EXPECT_TRUE(search::KeysPatient("Observation", "subject"));
  EXPECT_TRUE(search::KeysPatient("Observation", "patient"));
  EXPECT_FALSE(search::KeysPatient("Observation", "performer"));
  EXPECT_FALSE(search::KeysPatient("Observation", "specimen"));
  EXPECT_TRUE(search::KeysPatient("Condition", "patient"));
  EXPECT_TRUE(search::KeysPatient("Condition", "subject"));
  EXPECT_FALSE(search::KeysPatient("Condition", "asserter"));
  EXPECT_FALSE(search::KeysPatient("Account", "subject"));
  EXPECT_FALSE(search::KeysPatient("Patient", "link"));
  EXPECT_FALSE(search::KeysPatient("Organization", "partof"));

  auto keyed = [](const std::string& query) {
    auto params = search::ParseQueryString(query);
    EXPECT_TRUE(params.ok());
    auto parsed = search::ParseSearch(fhir::R4(), "Observation", *params, true);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    std::vector<bool> out;
    if (parsed.ok()) {
      for (const auto& c : parsed->query.clauses) out.push_back(c.patient_keyed);
    }
    return out;
  };
  EXPECT_EQ(keyed("subject=Patient/1&code=http://loinc.org|8867-4"),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(keyed("patient=1"), std::vector<bool>{true});
  EXPECT_EQ(keyed("subject=Group/1"), std::vector<bool>{false});
  EXPECT_EQ(keyed("subject=1"), std::vector<bool>{false});  // untyped: any target type
  EXPECT_EQ(keyed("performer=Patient/1"), std::vector<bool>{false});
  EXPECT_EQ(keyed("subject=Patient/1,Patient/2"), std::vector<bool>{false});
  EXPECT_EQ(keyed("subject:missing=true"), std::vector<bool>{false});
}

}  // namespace taproot
