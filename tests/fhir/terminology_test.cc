// Value set membership and subsumption, over the R4 specification's own value sets and over
// definitions added at run time. Expected answers are the published R4 content (for example,
// administrative-gender is male, female, other, unknown) or follow from the test's own
// definitions.
#include "fhir/terminology.h"

#include <gtest/gtest.h>

#include "common/json.h"
#include "fhirpath/engine.h"

namespace taproot::fhir {
namespace {

const char kGender[] = "http://hl7.org/fhir/ValueSet/administrative-gender";
const char kGenderCs[] = "http://hl7.org/fhir/administrative-gender";
const char kDar[] = "http://terminology.hl7.org/CodeSystem/data-absent-reason";

TEST(TerminologyTest, R4ValueSetsByCodingAndByCode) {
  const Terminology& t = R4Terminology();
  for (const char* code : {"male", "female", "other", "unknown"}) {
    EXPECT_TRUE(*t.Contains(kGender, kGenderCs, code)) << code;
    EXPECT_TRUE(*t.ContainsCode(kGender, code)) << code;
  }
  EXPECT_FALSE(*t.Contains(kGender, kGenderCs, "M"));
  EXPECT_FALSE(*t.Contains(kGender, "http://example.org/other-system", "male"));
  // A version suffix on the canonical is accepted.
  EXPECT_TRUE(*t.ContainsCode(std::string(kGender) + "|4.0.1", "female"));
  EXPECT_EQ(t.Contains("http://example.org/ValueSet/none", kGenderCs, "male").status().code(),
            StatusCode::kNotFound);
  // observation-codes is all of LOINC, which this server does not hold.
  EXPECT_EQ(
      t.ContainsCode("http://hl7.org/fhir/ValueSet/observation-codes", "1234-5").status().code(),
      StatusCode::kNotImplemented);
}

TEST(TerminologyTest, HierarchyFromNestedConcepts) {
  const Terminology& t = R4Terminology();
  // data-absent-reason: "asked-unknown" is nested under "unknown".
  EXPECT_TRUE(*t.Subsumes(kDar, "unknown", "asked-unknown"));
  EXPECT_TRUE(*t.Subsumes(kDar, "unknown", "unknown"));
  EXPECT_FALSE(*t.Subsumes(kDar, "asked-unknown", "unknown"));
  EXPECT_EQ(t.Subsumes("http://example.org/cs", "a", "b").status().code(), StatusCode::kNotFound);
}

TEST(TerminologyTest, RuntimeDefinitionsWithFiltersImportsAndExcludes) {
  Terminology t(&R4Terminology());
  auto cs = ParseJson(R"({"resourceType":"CodeSystem","url":"http://example.org/cs/animals",
      "content":"complete","concept":[
        {"code":"animal","concept":[
          {"code":"mammal","concept":[{"code":"dog"},{"code":"cat"}]},
          {"code":"bird","concept":[{"code":"owl"}]}]},
        {"code":"rock"}]})");
  ASSERT_TRUE(t.Add(cs->get_object()).ok());
  auto mammals = ParseJson(R"({"resourceType":"ValueSet","url":"http://example.org/vs/mammals",
      "compose":{"include":[{"system":"http://example.org/cs/animals",
        "filter":[{"property":"concept","op":"is-a","value":"mammal"}]}],
        "exclude":[{"system":"http://example.org/cs/animals","concept":[{"code":"cat"}]}]}})");
  ASSERT_TRUE(t.Add(mammals->get_object()).ok());
  auto below = ParseJson(R"({"resourceType":"ValueSet","url":"http://example.org/vs/below",
      "compose":{"include":[{"system":"http://example.org/cs/animals",
        "filter":[{"property":"concept","op":"descendent-of","value":"animal"}]},
        {"valueSet":["http://hl7.org/fhir/ValueSet/administrative-gender"]}]}})");
  ASSERT_TRUE(t.Add(below->get_object()).ok());
  const std::string sys = "http://example.org/cs/animals";
  EXPECT_TRUE(*t.Contains("http://example.org/vs/mammals", sys, "mammal"));
  EXPECT_TRUE(*t.Contains("http://example.org/vs/mammals", sys, "dog"));
  EXPECT_FALSE(*t.Contains("http://example.org/vs/mammals", sys, "cat"));  // excluded
  EXPECT_FALSE(*t.Contains("http://example.org/vs/mammals", sys, "owl"));
  EXPECT_FALSE(*t.Contains("http://example.org/vs/below", sys, "animal"));  // not itself
  EXPECT_TRUE(*t.Contains("http://example.org/vs/below", sys, "owl"));
  EXPECT_TRUE(*t.Contains("http://example.org/vs/below", kGenderCs, "other"));  // imported
  EXPECT_FALSE(*t.Contains("http://example.org/vs/below", sys, "rock"));
  // Two systems: a bare code is not enough to decide.
  EXPECT_FALSE(*t.ContainsCode("http://example.org/vs/below", "owl"));
  EXPECT_TRUE(*t.ContainsCode("http://example.org/vs/mammals", "dog"));
  // Replacing a definition drops the cached expansion.
  auto narrower = ParseJson(R"({"resourceType":"ValueSet","url":"http://example.org/vs/mammals",
      "compose":{"include":[{"system":"http://example.org/cs/animals",
        "concept":[{"code":"cat"}]}]}})");
  ASSERT_TRUE(t.Add(narrower->get_object()).ok());
  EXPECT_FALSE(*t.Contains("http://example.org/vs/mammals", sys, "dog"));
  EXPECT_TRUE(*t.Contains("http://example.org/vs/mammals", sys, "cat"));
  // The R4 layer underneath does not see these.
  EXPECT_EQ(R4Terminology().ContainsCode("http://example.org/vs/mammals", "cat").status().code(),
            StatusCode::kNotFound);
}

TEST(TerminologyTest, LoaderSuppliesWhatTheServerStores) {
  int calls = 0;
  Terminology t(
      &R4Terminology(),
      [&](const std::string& type, const std::string& url) -> std::optional<json::value> {
        ++calls;
        if (type == "ValueSet" && url == "http://example.org/vs/stored") {
          return *ParseJson(R"({"resourceType":"ValueSet","url":"http://example.org/vs/stored",
          "expansion":{"contains":[{"system":"http://example.org/s","code":"x",
            "contains":[{"system":"http://example.org/s","code":"y"}]}]}})");
        }
        return std::nullopt;
      });
  EXPECT_TRUE(*t.Contains("http://example.org/vs/stored", "http://example.org/s", "y"));
  EXPECT_FALSE(*t.Contains("http://example.org/vs/stored", "http://example.org/s", "z"));
  EXPECT_EQ(calls, 1);  // the expansion is cached
}

std::string Eval(const std::string& expr, const std::string& input,
                 const Terminology* terms = nullptr) {
  auto doc = ParseJson(input);
  auto compiled = fhirpath::Compile(expr);
  if (!compiled.ok()) return "compile error";
  fhirpath::EvalOptions options;
  options.terminology = terms;
  auto r = (*compiled)->Evaluate(*doc, options);
  if (!r.ok()) return "error";
  std::string out;
  for (const auto& i : *r) out += (out.empty() ? "" : ",") + fhirpath::ItemToString(i);
  return out;
}

TEST(TerminologyTest, FhirPathMemberOfAndSubsumes) {
  const std::string patient = R"({"resourceType":"Patient","gender":"female",
      "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]}})";
  const std::string obs = R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
      "dataAbsentReason":{"coding":[{"system":"http://example.org/x","code":"q"},
        {"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"asked-unknown"}]}})";
  EXPECT_EQ(Eval("Patient.gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')",
                 patient),
            "true");
  EXPECT_EQ(Eval("Patient.gender.memberOf(%`vs-data-absent-reason`)", patient), "false");
  // Any coding of a CodeableConcept; a single Coding on its own.
  EXPECT_EQ(Eval("Observation.dataAbsentReason.memberOf(%`vs-data-absent-reason`)", obs), "true");
  EXPECT_EQ(
      Eval("Observation.dataAbsentReason.coding.first().memberOf(%`vs-data-absent-reason`)", obs),
      "false");
  // Unknown value sets, and ones needing code systems not held here (v3-MaritalStatus), are
  // errors rather than a guessed false.
  EXPECT_EQ(Eval("Patient.gender.memberOf('http://example.org/unknown')", patient), "error");
  EXPECT_EQ(Eval("Patient.maritalStatus.memberOf(%`vs-marital-status`)", patient), "error");
  EXPECT_EQ(Eval("Patient.birthDate.memberOf('http://example.org/unknown')", patient), "");
  const std::string params = R"({"resourceType":"Parameters","parameter":[
      {"name":"a","valueCoding":{"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"unknown"}},
      {"name":"b","valueCoding":{"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"asked-unknown"}},
      {"name":"c","valueCoding":{"system":"http://example.org/none","code":"x"}}]})";
  EXPECT_EQ(Eval("Parameters.parameter[0].value.subsumes(Parameters.parameter[1].value)", params),
            "true");
  EXPECT_EQ(Eval("Parameters.parameter[1].value.subsumes(Parameters.parameter[0].value)", params),
            "false");
  EXPECT_EQ(Eval("Parameters.parameter[1].value.subsumedBy(Parameters.parameter[0].value)", params),
            "true");
  EXPECT_EQ(Eval("Parameters.parameter[2].value.subsumes(Parameters.parameter[2].value)", params),
            "");  // a code system this server does not hold: no answer
}

}  // namespace
}  // namespace taproot::fhir
