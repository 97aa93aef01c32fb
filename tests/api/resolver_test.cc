// resolve() over the store: FHIRPath evaluated by the server follows references to resources it
// holds, by relative reference, by absolute URL on its own base, and by version.
#include "search/resolver.h"

#include "api/engine_fixture.h"
#include "fhirpath/engine.h"

namespace taproot::api {
namespace {

class ResolverTest : public EngineTest {};
TAPROOT_BOTH_BACKENDS(ResolverTest);

std::vector<std::string> Strings(const fhirpath::Collection& c) {
  std::vector<std::string> out;
  for (const auto& i : c) out.push_back(fhirpath::ItemToString(i));
  return out;
}

TEST_P(ResolverTest, FollowsReferencesToStoredResources) {
  ASSERT_EQ(
      Do("PUT", "/Patient/p1", R"({"resourceType":"Patient","id":"p1","name":[{"given":["Ada"]}]})")
          .status,
      201);
  ASSERT_EQ(Do("PUT", "/Patient/p1",
               R"({"resourceType":"Patient","id":"p1","name":[{"given":["Ada","May"]}]})")
                .status,
            200);
  ASSERT_EQ(Do("PUT", "/Patient/gone", R"({"resourceType":"Patient","id":"gone"})").status, 201);
  ASSERT_EQ(Do("DELETE", "/Patient/gone").status, 204);
  auto obs = ParseJson(R"({"resourceType":"Observation","status":"final",
      "code":{"text":"x"},
      "subject":{"reference":"Patient/p1"},
      "focus":[{"reference":"http://test/fhir/Patient/p1/_history/1"},
               {"reference":"Patient/gone"},{"reference":"Patient/nope"},
               {"reference":"http://elsewhere/fhir/Patient/p1"}]})");
  ASSERT_TRUE(obs.ok());
  ASSERT_TRUE(store_
                  ->Read([&](store::ReadView& view) -> Status {
                    search::StoreResolver resolver(view, "http://test/fhir/");
                    fhirpath::EvalOptions options;
                    resolver.Attach(options);
                    auto current = fhirpath::Compile("Observation.subject.resolve().name.given");
                    auto r = (*current)->Evaluate(*obs, options);
                    EXPECT_TRUE(r.ok());
                    EXPECT_EQ(Strings(*r), (std::vector<std::string>{"Ada", "May"}));
                    // The first version by absolute URL; deleted, missing and foreign: nothing.
                    auto focus = fhirpath::Compile("Observation.focus.resolve().name.given");
                    r = (*focus)->Evaluate(*obs, options);
                    EXPECT_TRUE(r.ok());
                    EXPECT_EQ(Strings(*r), (std::vector<std::string>{"Ada"}));
                    // The resolved resource carries its version metadata, as a read returns it.
                    auto meta = fhirpath::Compile("Observation.subject.resolve().meta.versionId");
                    r = (*meta)->Evaluate(*obs, options);
                    EXPECT_EQ(Strings(*r), (std::vector<std::string>{"2"}));
                    return Status::Ok();
                  })
                  .ok());
}

TEST_P(ResolverTest, WithoutTheHookOnlyContainedAndBundleReferencesResolve) {
  auto obs = ParseJson(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
      "contained":[{"resourceType":"Patient","id":"c","gender":"other"}],
      "subject":{"reference":"#c"},"focus":[{"reference":"Patient/p1"}]})");
  auto e = fhirpath::Compile("(Observation.subject | Observation.focus).resolve().gender");
  auto r = (*e)->Evaluate(*obs);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Strings(*r), (std::vector<std::string>{"other"}));
}

TEST_P(ResolverTest, MemberOfSeesValueSetsStoredOnTheServer) {
  ASSERT_EQ(Do("POST", "/CodeSystem", R"({"resourceType":"CodeSystem","status":"active",
      "url":"http://example.org/cs/colour","content":"complete",
      "concept":[{"code":"red"},{"code":"green"},{"code":"blue"}]})")
                .status,
            201);
  ASSERT_EQ(Do("POST", "/ValueSet", R"({"resourceType":"ValueSet","status":"active",
      "url":"http://example.org/vs/warm",
      "compose":{"include":[{"system":"http://example.org/cs/colour",
        "filter":[{"property":"concept","op":"in","value":"red,green"}]}]}})")
                .status,
            201);
  // The url index also answers ValueSet?url=.
  auto found = Body(Do("GET", "/ValueSet?url=http://example.org/vs/warm"));
  EXPECT_EQ(found.at("total").as_int64(), 1);
  fhir::Terminology terms(&fhir::R4Terminology(), search::StoreTerminologyLoader(*store_));
  fhirpath::EvalOptions options;
  options.terminology = &terms;
  auto patient = ParseJson(R"({"resourceType":"Patient","gender":"male"})");
  auto eval = [&](const std::string& expr) {
    auto r = (*fhirpath::Compile(expr))->Evaluate(*patient, options);
    return r.ok() ? Strings(*r) : std::vector<std::string>{"error"};
  };
  EXPECT_EQ(eval("'red'.memberOf('http://example.org/vs/warm')"), std::vector<std::string>{"true"});
  EXPECT_EQ(eval("'blue'.memberOf('http://example.org/vs/warm')"),
            std::vector<std::string>{"false"});
  EXPECT_EQ(eval("Patient.gender.memberOf(%`vs-administrative-gender`)"),
            std::vector<std::string>{"true"});  // the R4 layer underneath
  EXPECT_EQ(eval("'red'.memberOf('http://example.org/vs/missing')"),
            std::vector<std::string>{"error"});
}

}  // namespace
}  // namespace taproot::api
