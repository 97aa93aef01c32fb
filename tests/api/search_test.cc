// Search over the REST API: every parameter type with its modifiers and prefixes. Each test
// writes a handful of resources whose expected matches follow from how they were written (the
// comment by each case says why), never from the code under test.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "api/engine_fixture.h"
#include "search/indexer.h"
#include "test_util.h"

namespace taproot::api {
namespace {

class SearchTest : public EngineTest {
 protected:
  void Put(const std::string& type, const std::string& id, const std::string& body) {
    FhirResponse r = Do("PUT", "/" + type + "/" + id, body);
    ASSERT_TRUE(r.status == 200 || r.status == 201) << r.body;
  }
  // The ids a search returns (all pages' worth: _count is raised), sorted.
  std::set<std::string> Ids(const std::string& query) {
    FhirResponse r =
        Do("GET", "/" + query + (query.find('?') == std::string::npos ? "?" : "&") + "_count=1000",
           "", {{"prefer", "handling=strict"}});
    std::set<std::string> out;
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    if (r.status != 200) return {"error"};
    json::value b = Body(r);
    if (auto* e = b.as_object().if_contains("entry")) {
      for (const auto& x : e->as_array()) {
        out.insert(std::string(x.at("resource").at("id").as_string()));
      }
    }
    EXPECT_EQ(b.at("total").as_int64(), static_cast<int64_t>(out.size())) << query;
    return out;
  }
  int Status(const std::string& query) {
    return Do("GET", "/" + query, "", {{"prefer", "handling=strict"}}).status;
  }
};

TAPROOT_BOTH_BACKENDS(SearchTest);

using Set = std::set<std::string>;

TEST_P(SearchTest, StringsMatchPrefixCaseAndAccentInsensitively) {
  Put("Patient", "a",
      R"({"resourceType":"Patient","id":"a","name":[{"family":"Müller","given":["Anna"]}]})");
  Put("Patient", "b",
      R"({"resourceType":"Patient","id":"b","name":[{"family":"Mull","given":["Bob"]}],
      "address":[{"line":["1 High Street"],"city":"Leeds","postalCode":"LS1 4AB"}]})");
  Put("Patient", "c", R"({"resourceType":"Patient","id":"c","name":[{"text":"Carl Smith"}]})");
  EXPECT_EQ(Ids("Patient?family=mul"), (Set{"a", "b"}));    // starts with, folded
  EXPECT_EQ(Ids("Patient?family=MULLER"), (Set{"a"}));      // ü matches u
  EXPECT_EQ(Ids("Patient?family:exact=Mull"), (Set{"b"}));  // exact: as written
  EXPECT_EQ(Ids("Patient?family:exact=mull"), (Set{}));
  EXPECT_EQ(Ids("Patient?name:contains=mit"), (Set{"c"}));  // name covers text
  EXPECT_EQ(Ids("Patient?name=anna"), (Set{"a"}));          // and given
  EXPECT_EQ(Ids("Patient?address=1 high"), (Set{"b"}));
  EXPECT_EQ(Ids("Patient?address=high"), (Set{}));  // the start of a field, not of a word
  EXPECT_EQ(Ids("Patient?address-city=leeds"), (Set{"b"}));
  EXPECT_EQ(Ids("Patient?address-postalcode=LS1"), (Set{"b"}));
  EXPECT_EQ(Ids("Patient?family=zz,mull"), (Set{"a", "b"}));   // OR within a parameter
  EXPECT_EQ(Ids("Patient?family=mul&given=bob"), (Set{"b"}));  // AND across parameters
  EXPECT_EQ(Ids("Patient?address:missing=true"), (Set{"a", "c"}));
  EXPECT_EQ(Ids("Patient?address:missing=false"), (Set{"b"}));
}

TEST_P(SearchTest, TokensBySystemCodeTextAndNot) {
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]}})");
  Put("Observation", "o2", R"({"resourceType":"Observation","id":"o2","status":"amended",
      "code":{"coding":[{"system":"http://snomed.info/sct","code":"8867-4"}],"text":"Pulse"}})");
  Put("Observation", "o3", R"({"resourceType":"Observation","id":"o3","status":"final",
      "code":{"coding":[{"code":"8867-4"}]}})");
  EXPECT_EQ(Ids("Observation?code=8867-4"), (Set{"o1", "o2", "o3"}));  // any system
  EXPECT_EQ(Ids("Observation?code=http://loinc.org|8867-4"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?code=|8867-4"), (Set{"o3"}));     // no system
  EXPECT_EQ(Ids("Observation?code:text=heart"), (Set{"o1"}));  // display
  EXPECT_EQ(Ids("Observation?code:text=puls"), (Set{"o2"}));   // CodeableConcept.text
  EXPECT_EQ(Ids("Observation?status=final"), (Set{"o1", "o3"}));
  EXPECT_EQ(Ids("Observation?status:not=final"), (Set{"o2"}));
  EXPECT_EQ(Ids("Observation?_id=o1,o2&status=final"), (Set{"o1"}));
  Put("Patient", "p", R"({"resourceType":"Patient","id":"p","gender":"female","active":true,
      "identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],
      "telecom":[{"system":"phone","value":"0113 496 0000"}]})");
  EXPECT_EQ(Ids("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"), (Set{"p"}));
  EXPECT_EQ(Ids("Patient?gender=female&active=true"), (Set{"p"}));
  EXPECT_EQ(Ids("Patient?active=false"), (Set{}));
  EXPECT_EQ(Ids("Patient?phone=0113 496 0000"), (Set{"p"}));
  Put("Patient", "q", R"({"resourceType":"Patient","id":"q","identifier":[{"type":{"coding":[
      {"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"value":"M123"}]})");
  EXPECT_EQ(Ids("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M123"),
            (Set{"q"}));
  EXPECT_EQ(Ids("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|DL|M123"),
            (Set{}));
  EXPECT_EQ(Status("Patient?identifier:of-type=M123"), 400);
}

TEST_P(SearchTest, TokensInValueSetsAndHierarchies) {
  // R4's data-absent-reason: asked-unknown and temp-unknown are below unknown; masked is not.
  const char* dar = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
  auto obs = [&](const std::string& id, const std::string& code) {
    Put("Observation", id,
        R"({"resourceType":"Observation","id":")" + id +
            R"(","status":"final","code":{"text":"x"},"dataAbsentReason":{"coding":[{"system":")" +
            dar + R"(","code":")" + code + R"("}]}})");
  };
  obs("a", "asked-unknown");
  obs("m", "masked");
  obs("u", "unknown");
  EXPECT_EQ(Ids(std::string("Observation?data-absent-reason:below=") + dar + "|unknown"),
            (Set{"a", "u"}));
  EXPECT_EQ(Ids(std::string("Observation?data-absent-reason:above=") + dar + "|asked-unknown"),
            (Set{"a", "u"}));
  EXPECT_EQ(
      Ids("Observation?data-absent-reason:in=http://hl7.org/fhir/ValueSet/data-absent-reason"),
      (Set{"a", "m", "u"}));
  // A value set stored on this server, by its canonical URL.
  ASSERT_EQ(Do("POST", "/ValueSet",
               std::string(R"({"resourceType":"ValueSet","status":"active",
      "url":"http://example.org/vs/unknowns","compose":{"include":[{"system":")") +
                   dar + R"(","filter":[{"property":"concept","op":"is-a","value":"unknown"}]}]}})")
                .status,
            201);
  EXPECT_EQ(Ids("Observation?data-absent-reason:in=http://example.org/vs/unknowns"),
            (Set{"a", "u"}));
  EXPECT_EQ(Ids("Observation?data-absent-reason:not-in=http://example.org/vs/unknowns"),
            (Set{"m"}));
  EXPECT_EQ(Status("Observation?data-absent-reason:in=http://example.org/vs/none"), 400);
}

TEST_P(SearchTest, ReferencesByTypeIdUrlAndIdentifier) {
  Put("Patient", "p1", R"({"resourceType":"Patient","id":"p1"})");
  Put("Group", "g1", R"({"resourceType":"Group","id":"g1","type":"person","actual":true})");
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Patient/p1"}})");
  Put("Observation", "o2", R"({"resourceType":"Observation","id":"o2","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Group/g1"}})");
  Put("Observation", "o3", R"({"resourceType":"Observation","id":"o3","status":"final",
      "code":{"text":"x"},"subject":{"identifier":{"system":"urn:s","value":"42"}}})");
  EXPECT_EQ(Ids("Observation?subject=Patient/p1"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?subject=p1"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?subject:Group=g1"), (Set{"o2"}));
  EXPECT_EQ(Ids("Observation?subject=http://test/fhir/Patient/p1"), (Set{"o1"}));
  // patient is subject.where(resolve() is Patient): the Group subject is not a patient.
  EXPECT_EQ(Ids("Observation?patient=p1"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?patient=g1"), (Set{}));
  EXPECT_EQ(Ids("Observation?subject:identifier=urn:s|42"), (Set{"o3"}));
  EXPECT_EQ(Ids("Observation?subject:missing=true"), (Set{"o3"}));
}

TEST_P(SearchTest, DatesWithEveryPrefixAndPrecision) {
  // e1: all of 2020-03-10 (a date); e2: an instant in 2021; e3: a period from 2019 to 2022.
  Put("Encounter", "e1", R"({"resourceType":"Encounter","id":"e1","status":"finished",
      "class":{"code":"AMB"},"period":{"start":"2020-03-10","end":"2020-03-10"}})");
  Put("Encounter", "e2", R"({"resourceType":"Encounter","id":"e2","status":"finished",
      "class":{"code":"AMB"},"period":{"start":"2021-06-01T10:00:00Z","end":"2021-06-01T11:00:00Z"}})");
  Put("Encounter", "e3", R"({"resourceType":"Encounter","id":"e3","status":"finished",
      "class":{"code":"AMB"},"period":{"start":"2019-01-01","end":"2022-12-31"}})");
  Put("Encounter", "e4", R"({"resourceType":"Encounter","id":"e4","status":"planned",
      "class":{"code":"AMB"},"period":{"start":"2030-01-01"}})");  // open-ended
  EXPECT_EQ(Ids("Encounter?date=2020"), (Set{"e1"}));              // e3 is not within 2020
  EXPECT_EQ(Ids("Encounter?date=2020-03-10"), (Set{"e1"}));
  EXPECT_EQ(Ids("Encounter?date=eq2021-06-01"), (Set{"e2"}));
  EXPECT_EQ(Ids("Encounter?date=ne2020"), (Set{"e2", "e3", "e4"}));
  EXPECT_EQ(Ids("Encounter?date=gt2021"), (Set{"e3", "e4"}));  // ends after 2021
  EXPECT_EQ(Ids("Encounter?date=lt2020"), (Set{"e3"}));        // starts before 2020
  EXPECT_EQ(Ids("Encounter?date=ge2021-06-01"), (Set{"e2", "e3", "e4"}));
  EXPECT_EQ(Ids("Encounter?date=le2020-03-10"), (Set{"e1", "e3"}));
  EXPECT_EQ(Ids("Encounter?date=sa2022"), (Set{"e4"}));  // starts after 2022
  EXPECT_EQ(Ids("Encounter?date=eb2020"), (Set{}));      // none ends before 2020
  EXPECT_EQ(Ids("Encounter?date=eb2021"), (Set{"e1"}));
  EXPECT_EQ(Ids("Encounter?date=gt2021-06-01T10:30&date=lt2021-06-01T10:30"), (Set{"e2", "e3"}));
  EXPECT_EQ(Status("Encounter?date=soon"), 400);
}

TEST_P(SearchTest, NumbersAndQuantitiesWithUnits) {
  Put("Observation", "g1", R"({"resourceType":"Observation","id":"g1","status":"final",
      "code":{"text":"glucose"},"valueQuantity":{"value":5.5,"system":"http://unitsofmeasure.org","code":"mmol/L"}})");
  Put("Observation", "g2", R"({"resourceType":"Observation","id":"g2","status":"final",
      "code":{"text":"glucose"},"valueQuantity":{"value":7.2,"system":"http://unitsofmeasure.org","code":"mmol/L"}})");
  Put("Observation", "w1", R"({"resourceType":"Observation","id":"w1","status":"final",
      "code":{"text":"weight"},"valueQuantity":{"value":72000,"system":"http://unitsofmeasure.org","code":"g"}})");
  EXPECT_EQ(Ids("Observation?value-quantity=5.5"), (Set{"g1"}));
  EXPECT_EQ(Ids("Observation?value-quantity=gt6||mmol/L"), (Set{"g2"}));
  // UCUM: 5500 umol/L is 5.5 mmol/L; 72 kg is 72000 g.
  EXPECT_EQ(Ids("Observation?value-quantity=5500|http://unitsofmeasure.org|umol/L"), (Set{"g1"}));
  EXPECT_EQ(Ids("Observation?value-quantity=ge70|http://unitsofmeasure.org|kg"), (Set{"w1"}));
  EXPECT_EQ(Ids("Observation?value-quantity=lt8|http://unitsofmeasure.org|mmol/L"),
            (Set{"g1", "g2"}));
  EXPECT_EQ(Ids("Observation?value-quantity=ap7|http://unitsofmeasure.org|mmol/L"), (Set{"g2"}));
  // A search value stands for its precision range, lower bound included: 6 is [5.5, 6.5),
  // 5 is [4.5, 5.5), 5.50 is [5.495, 5.505).
  EXPECT_EQ(Ids("Observation?value-quantity=6||mmol/L"), (Set{"g1"}));
  EXPECT_EQ(Ids("Observation?value-quantity=5||mmol/L"), (Set{}));
  EXPECT_EQ(Ids("Observation?value-quantity=5.50||mmol/L"), (Set{"g1"}));
  EXPECT_EQ(Ids("Observation?value-quantity=ne5.5||mmol/L"), (Set{"g2"}));
  Put("RiskAssessment", "r1", R"({"resourceType":"RiskAssessment","id":"r1","status":"final",
      "subject":{"reference":"Patient/x"},"prediction":[{"probabilityDecimal":0.8}]})");
  Put("RiskAssessment", "r2", R"({"resourceType":"RiskAssessment","id":"r2","status":"final",
      "subject":{"reference":"Patient/x"},"prediction":[{"probabilityDecimal":0.25}]})");
  EXPECT_EQ(Ids("RiskAssessment?probability=gt0.5"), (Set{"r1"}));
  EXPECT_EQ(Ids("RiskAssessment?probability=0.8"), (Set{"r1"}));
  EXPECT_EQ(Ids("RiskAssessment?probability=le0.25"), (Set{"r2"}));
  EXPECT_EQ(Status("RiskAssessment?probability=high"), 400);
}

TEST_P(SearchTest, UrisAboveAndBelow) {
  Put("ValueSet", "v1", R"({"resourceType":"ValueSet","id":"v1","status":"active",
      "url":"http://example.org/fhir/ValueSet/colours"})");
  Put("ValueSet", "v2", R"({"resourceType":"ValueSet","id":"v2","status":"active",
      "url":"http://example.org/fhir/ValueSet/colours/warm"})");
  EXPECT_EQ(Ids("ValueSet?url=http://example.org/fhir/ValueSet/colours"), (Set{"v1"}));
  EXPECT_EQ(Ids("ValueSet?url:below=http://example.org/fhir/ValueSet/colours"), (Set{"v1", "v2"}));
  EXPECT_EQ(Ids("ValueSet?url:above=http://example.org/fhir/ValueSet/colours/warm/x"),
            (Set{"v1", "v2"}));
}

TEST_P(SearchTest, MetaParametersAndUpdatesReplaceRows) {
  Put("Patient", "m", R"({"resourceType":"Patient","id":"m","meta":{
      "profile":["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"],
      "tag":[{"system":"urn:t","code":"demo"}],"security":[{"code":"R"}],"source":"urn:src"},
      "name":[{"family":"Old"}]})");
  EXPECT_EQ(Ids("Patient?_profile=https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"),
            (Set{"m"}));
  EXPECT_EQ(Ids("Patient?_tag=urn:t|demo"), (Set{"m"}));
  EXPECT_EQ(Ids("Patient?_security=R"), (Set{"m"}));
  EXPECT_EQ(Ids("Patient?_source=urn:src"), (Set{"m"}));
  Put("Patient", "m", R"({"resourceType":"Patient","id":"m","name":[{"family":"New"}]})");
  EXPECT_EQ(Ids("Patient?family=old"), (Set{}));
  EXPECT_EQ(Ids("Patient?family=new"), (Set{"m"}));
  EXPECT_EQ(Ids("Patient?_tag=demo"), (Set{}));
  // Counts drop the rows of the replaced version too (they are counted from the index alone).
  auto total = [&](const std::string& url) { return Body(Do("GET", url)).at("total").as_int64(); };
  EXPECT_EQ(total("/Patient?_tag=urn:t|demo&_summary=count"), 0);
  EXPECT_EQ(total("/Patient?family=new&_summary=count"), 1);
  Put("Patient", "m", R"({"resourceType":"Patient","id":"m","name":[{"family":"New"}],
      "meta":{"tag":[{"system":"urn:t","code":"demo"}]}})");
  EXPECT_EQ(total("/Patient?_tag=urn:t|demo&_summary=count"), 1);
  EXPECT_EQ(total("/Patient?_tag=urn:t|demo&family=new&_summary=count"), 1);
  ASSERT_EQ(Do("DELETE", "/Patient/m").status, 204);
  EXPECT_EQ(Ids("Patient?family=new"), (Set{}));
  EXPECT_EQ(total("/Patient?_tag=urn:t|demo&_summary=count"), 0);
  EXPECT_EQ(total("/Patient?_summary=count"), 0);
}

TEST_P(SearchTest, IncludeAndRevinclude) {
  Put("Organization", "org", R"({"resourceType":"Organization","id":"org","name":"Leeds GP"})");
  Put("Practitioner", "dr", R"({"resourceType":"Practitioner","id":"dr"})");
  Put("Patient", "p1",
      R"({"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"Organization/org"},
      "generalPractitioner":[{"reference":"Practitioner/dr"}]})");
  Put("Patient", "p2", R"({"resourceType":"Patient","id":"p2"})");
  Put("Encounter", "e1", R"({"resourceType":"Encounter","id":"e1","status":"finished",
      "class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}})");
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"}})");
  Put("Observation", "o2", R"({"resourceType":"Observation","id":"o2","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Patient/p2"}})");
  // Entries by search mode; the ids of the included ones.
  auto entries = [&](const std::string& query) {
    std::map<std::string, Set> by_mode;
    json::value b = Body(Do("GET", "/" + query, "", {{"prefer", "handling=strict"}}));
    if (auto* e = b.as_object().if_contains("entry")) {
      for (const auto& x : e->as_array()) {
        by_mode[std::string(x.at("search").at("mode").as_string())].insert(
            std::string(x.at("resource").at("resourceType").as_string()) + "/" +
            std::string(x.at("resource").at("id").as_string()));
      }
    }
    return by_mode;
  };
  auto r = entries("Observation?_id=o1&_include=Observation:subject");
  EXPECT_EQ(r["match"], (Set{"Observation/o1"}));
  EXPECT_EQ(r["include"], (Set{"Patient/p1"}));
  // Two matches referring to two patients: included once each, with one query per type.
  r = entries(
      "Observation?code:text=x&_include=Observation:subject&_include=Observation:encounter");
  EXPECT_EQ(r["include"], (Set{"Patient/p1", "Patient/p2", "Encounter/e1"}));
  // A target type narrows; * takes every reference parameter.
  r = entries("Observation?_id=o1&_include=Observation:subject:Group");
  EXPECT_EQ(r["include"], (Set{}));
  r = entries("Patient?_id=p1&_include=*");
  EXPECT_EQ(r["include"], (Set{"Organization/org", "Practitioner/dr"}));
  // Reverse: what refers to the matches.
  r = entries("Patient?_id=p1&_revinclude=Observation:subject&_revinclude=Encounter:subject");
  EXPECT_EQ(r["include"], (Set{"Observation/o1", "Encounter/e1"}));
  // :iterate follows from what was included: the patient's observations, then their encounters.
  r = entries(
      "Patient?_id=p1&_revinclude=Observation:patient&_include:iterate=Observation:encounter");
  EXPECT_EQ(r["include"], (Set{"Observation/o1", "Encounter/e1"}));
  r = entries("Patient?_id=p1&_revinclude=Observation:patient&_include=Observation:encounter");
  EXPECT_EQ(r["include"], (Set{"Observation/o1"}));  // without :iterate it stops at one step
  EXPECT_EQ(Status("Observation?_include=Observation:code"), 400);  // not a reference
  EXPECT_EQ(Status("Observation?_include=Nope:subject"), 400);
  // Filtering on the parameter it includes by: the clause's targets are read with the page, but
  // only what a match refers to is included.
  r = entries("Observation?subject=Patient/p1&_include=Observation:subject");
  EXPECT_EQ(r["match"], (Set{"Observation/o1"}));
  EXPECT_EQ(r["include"], (Set{"Patient/p1"}));
  r = entries("Observation?subject=p1,p2,nobody&status=final&_include=Observation:subject");
  EXPECT_EQ(r["include"], (Set{"Patient/p1", "Patient/p2"}));
  r = entries("Observation?subject=p1,p2&code:text=x&_id=o2&_include=Observation:subject");
  EXPECT_EQ(r["match"], (Set{"Observation/o2"}));
  EXPECT_EQ(r["include"], (Set{"Patient/p2"}));  // p1 was read, and is not sent
  r = entries("Observation?subject=p2&status=cancelled&_include=Observation:subject");
  EXPECT_EQ(r["include"], (Set{}));  // no match: nothing included
  r = entries("Encounter?subject=Patient/p1&_include=Encounter:subject:Group");
  EXPECT_EQ(r["include"], (Set{}));  // the include's target type rules the clause's out
}

TEST_P(SearchTest, ChainsAndReverseChains) {
  Put("Organization", "leeds",
      R"({"resourceType":"Organization","id":"leeds","name":"Leeds Practice"})");
  Put("Organization", "york",
      R"({"resourceType":"Organization","id":"york","name":"York Practice"})");
  Put("Practitioner", "dr1",
      R"({"resourceType":"Practitioner","id":"dr1","name":[{"family":"Khan"}]})");
  Put("Patient", "p1", R"({"resourceType":"Patient","id":"p1","name":[{"family":"Ash"}],
      "managingOrganization":{"reference":"Organization/leeds"},
      "generalPractitioner":[{"reference":"Practitioner/dr1"}]})");
  Put("Patient", "p2", R"({"resourceType":"Patient","id":"p2","name":[{"family":"Birch"}],
      "managingOrganization":{"reference":"Organization/york"}})");
  Put("Group", "g", R"({"resourceType":"Group","id":"g","type":"person","actual":true,
      "identifier":[{"system":"urn:x","value":"ash"}]})");
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"}})");
  Put("Observation", "o2", R"({"resourceType":"Observation","id":"o2","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"subject":{"reference":"Patient/p2"}})");
  Put("Observation", "o3", R"({"resourceType":"Observation","id":"o3","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Group/g"}})");
  // Forward: by the subject's name (R4 Group has no name parameter, so only patients match);
  // identifier exists on both target types; the type modifier narrows.
  EXPECT_EQ(Ids("Observation?subject.name=ash"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?subject.identifier=urn:x|ash"), (Set{"o3"}));
  EXPECT_EQ(Ids("Observation?subject:Group.identifier=ash"), (Set{"o3"}));
  EXPECT_EQ(Ids("Observation?subject:Patient.identifier=ash"), (Set{}));
  // Two levels: the patient's GP's family name, the managing organisation's name.
  EXPECT_EQ(Ids("Observation?subject:Patient.general-practitioner.family=khan"), (Set{"o1"}));
  EXPECT_EQ(Ids("Observation?subject:Patient.organization.name=york"), (Set{"o2"}));
  EXPECT_EQ(Ids("Observation?subject:Patient.organization.name=york,leeds"), (Set{"o1", "o2"}));
  // Reverse: patients with an observation of a code; nested: organisations with such patients.
  EXPECT_EQ(Ids("Patient?_has:Observation:patient:code=8867-4"), (Set{"p1"}));
  EXPECT_EQ(Ids("Patient?_has:Observation:subject:code=http://loinc.org|1234-5"), (Set{"p2"}));
  EXPECT_EQ(Ids("Organization?_has:Patient:organization:_has:Observation:patient:code=8867-4"),
            (Set{"leeds"}));
  // A chain and a reverse chain combine with plain parameters (AND).
  EXPECT_EQ(Ids("Patient?_has:Observation:patient:status=final&family=birch"), (Set{"p2"}));
  // An updated observation stops matching under its old code.
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"9999-9"}]},"subject":{"reference":"Patient/p1"}})");
  EXPECT_EQ(Ids("Patient?_has:Observation:patient:code=8867-4"), (Set{}));
  EXPECT_EQ(Status("Observation?code.name=x"), 400);  // not a reference: cannot chain
  EXPECT_EQ(Status("Observation?subject.nonsense=x"), 400);
  EXPECT_EQ(Status("Patient?_has:Observation:code:status=final"), 400);  // code is no reference
}

TEST_P(SearchTest, CompartmentsAndEverything) {
  Put("Patient", "p1", R"({"resourceType":"Patient","id":"p1"})");
  Put("Patient", "p2", R"({"resourceType":"Patient","id":"p2"})");
  Put("Practitioner", "dr", R"({"resourceType":"Practitioner","id":"dr"})");
  // o1: p1 is the subject; o2: p1 is a performer (also a link of the Patient compartment);
  // o3: p2's. c1: p1's condition; e1: p1's encounter.
  Put("Observation", "o1", R"({"resourceType":"Observation","id":"o1","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Patient/p1"}})");
  Put("Observation", "o2", R"({"resourceType":"Observation","id":"o2","status":"amended",
      "code":{"text":"x"},"subject":{"reference":"Patient/p2"},"performer":[{"reference":"Patient/p1"}]})");
  Put("Observation", "o3", R"({"resourceType":"Observation","id":"o3","status":"final",
      "code":{"text":"x"},"subject":{"reference":"Patient/p2"}})");
  Put("Condition", "c1",
      R"({"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"}})");
  Put("Encounter", "e1", R"({"resourceType":"Encounter","id":"e1","status":"finished",
      "class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}})");
  EXPECT_EQ(Ids("Patient/p1/Observation"), (Set{"o1", "o2"}));
  EXPECT_EQ(Ids("Patient/p1/Observation?status=final"), (Set{"o1"}));
  EXPECT_EQ(Ids("Patient/p2/Observation"), (Set{"o2", "o3"}));
  EXPECT_EQ(Ids("Patient/p1/Condition"), (Set{"c1"}));
  EXPECT_EQ(Ids("Patient/p1/Patient"), (Set{"p1"}));
  EXPECT_EQ(Status("Patient/p1/Practitioner"), 400);  // not in the Patient compartment
  // $everything: the patient, then its compartment by type, paged.
  auto everything = [&](const std::string& query) {
    Set ids;
    FhirResponse r = Do("GET", "/Patient/p1/$everything" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    json::value b = Body(r);
    if (auto* e = b.as_object().if_contains("entry")) {
      for (const auto& x : e->as_array()) {
        ids.insert(std::string(x.at("resource").at("resourceType").as_string()) + "/" +
                   std::string(x.at("resource").at("id").as_string()));
      }
    }
    return std::make_pair(b.at("total").as_int64(), ids);
  };
  auto [total, all] = everything("");
  EXPECT_EQ(total, 5);
  EXPECT_EQ(
      all, (Set{"Patient/p1", "Observation/o1", "Observation/o2", "Condition/c1", "Encounter/e1"}));
  // Two pages of 3 cover the same five, each once.
  auto [t1, first] = everything("?_count=3");
  auto [t2, second] = everything("?_count=3&_offset=3");
  EXPECT_EQ(first.size(), 3u);
  EXPECT_EQ(second.size(), 2u);
  Set both = first;
  both.insert(second.begin(), second.end());
  EXPECT_EQ(both, all);
  // Pages of every size cover the five once each, whichever types a page boundary splits, and
  // every page reports the whole total.
  for (int size = 1; size <= 6; ++size) {
    Set covered;
    size_t entries = 0;
    for (int offset = 0; offset < 6; offset += size) {
      auto [t, got] =
          everything("?_count=" + std::to_string(size) + "&_offset=" + std::to_string(offset));
      EXPECT_EQ(t, 5) << size << " at " << offset;
      entries += got.size();
      covered.insert(got.begin(), got.end());
    }
    EXPECT_EQ(entries, 5u) << size;
    EXPECT_EQ(covered, all) << size;
  }
  EXPECT_EQ(everything("?_type=Observation,Condition").second,
            (Set{"Observation/o1", "Observation/o2", "Condition/c1"}));
  // Care dates: e1 has no period, so only undated types remain for a range in 1990.
  Put("Encounter", "e1", R"({"resourceType":"Encounter","id":"e1","status":"finished",
      "class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2020-02-01"}})");
  EXPECT_EQ(everything("?start=1990-01-01&end=1990-12-31").second.count("Encounter/e1"), 0u);
  EXPECT_EQ(everything("?start=2020-01-01&end=2020-12-31").second.count("Encounter/e1"), 1u);
  EXPECT_EQ(everything("?start=2020-01-01&end=2020-12-31").second.count("Patient/p1"), 1u);
  EXPECT_EQ(Do("GET", "/Patient/p1/$everything?start=soon").status, 400);
  EXPECT_EQ(everything("?_since=2999-01-01").first, 0);  // nothing changed since then
  EXPECT_EQ(everything("?_since=2000-01-01").first, 5);
  EXPECT_EQ(Do("GET", "/Patient/nobody/$everything").status, 404);
}

TEST_P(SearchTest, SortByAnyParameterAndSeveralKeys) {
  // Each with the same identifier, so that a search by it has a driving clause.
  Put("Patient", "a",
      R"({"resourceType":"Patient","id":"a","identifier":[{"system":"s","value":"x"}],)"
      R"("name":[{"family":"Brown"}],"birthDate":"1990-05-01"})");
  Put("Patient", "b",
      R"({"resourceType":"Patient","id":"b","identifier":[{"system":"s","value":"x"}],)"
      R"("name":[{"family":"adams"}],"birthDate":"1980"})");
  Put("Patient", "c",
      R"({"resourceType":"Patient","id":"c","identifier":[{"system":"s","value":"x"}],)"
      R"("name":[{"family":"Brown"}],"birthDate":"1975-01-01"})");
  // No name, no birth date.
  Put("Patient", "d",
      R"({"resourceType":"Patient","id":"d","identifier":[{"system":"s","value":"x"}]})");
  auto order = [&](const std::string& query) {
    std::vector<std::string> ids;
    json::value b = Body(Do("GET", "/" + query, "", {{"prefer", "handling=strict"}}));
    if (auto* e = b.as_object().if_contains("entry")) {
      for (const auto& x : e->as_array()) ids.emplace_back(x.at("resource").at("id").as_string());
    }
    return ids;
  };
  using V = std::vector<std::string>;
  // Case-insensitive by family; ties by id; missing values last.
  EXPECT_EQ(order("Patient?_sort=family"), (V{"b", "a", "c", "d"}));
  EXPECT_EQ(order("Patient?_sort=-family"), (V{"a", "c", "b", "d"}));
  EXPECT_EQ(order("Patient?_sort=birthdate"), (V{"c", "b", "a", "d"}));
  EXPECT_EQ(order("Patient?_sort=family,-birthdate"), (V{"b", "a", "c", "d"}));
  EXPECT_EQ(order("Patient?_sort=-_id"), (V{"d", "c", "b", "a"}));
  // Paging keeps the order.
  EXPECT_EQ(order("Patient?_sort=birthdate&_count=2&_offset=2"), (V{"a", "d"}));
  // The same from a driving clause, where a sort by dates only orders the index rows before
  // reading the page's versions. Descending, a date sorts by its end: 1980 ends after 1975.
  EXPECT_EQ(order("Patient?identifier=s|x&_sort=birthdate"), (V{"c", "b", "a", "d"}));
  EXPECT_EQ(order("Patient?identifier=s|x&_sort=-birthdate"), (V{"a", "b", "c", "d"}));
  EXPECT_EQ(order("Patient?identifier=s|x&_sort=birthdate&_count=2&_offset=2"), (V{"a", "d"}));
  EXPECT_EQ(order("Patient?identifier=s|x&_sort=-birthdate&_count=1&_offset=1"), (V{"b"}));
  EXPECT_EQ(order("Patient?identifier=s|x&family=brown&_sort=-birthdate"), (V{"a", "c"}));
  EXPECT_EQ(Body(Do("GET", "/Patient?identifier=s|x&_sort=-birthdate&_count=2")).at("total"), 4);
  EXPECT_EQ(Status("Patient?_sort=nonsense"), 400);
}

// $reindex rebuilds rows a store lacks (here: written without index rows, as by an older
// build), in the background, with its progress readable while and after it runs.
TEST_P(SearchTest, ReindexRebuildsMissingRows) {
  ASSERT_TRUE(store_
                  ->Write([&](store::WriteTxn& txn) -> taproot::Status {
                    for (int i = 0; i < 1200; ++i) {
                      store::WriteRecord r;
                      r.version.type = "Patient";
                      r.version.id = "r" + std::to_string(i);
                      r.version.version = 1;
                      r.version.last_updated = txn.NextTimestamp();
                      r.version.method = "PUT";
                      r.version.json = R"({"resourceType":"Patient","id":"r)" + std::to_string(i) +
                                       R"(","meta":{},"gender":")" + (i % 3 ? "male" : "female") +
                                       R"("})";
                      RETURN_IF_ERROR(txn.Put(r));  // no index rows
                    }
                    return taproot::Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(Ids("Patient?gender=female").size(), 0u);
  FhirResponse started = Do("POST", "/Patient/$reindex");
  ASSERT_EQ(started.status, 202) << started.body;
  auto state = [&] {
    json::value b = Body(Do("GET", "/$reindex"));
    std::map<std::string, json::value> out;
    for (const auto& p : b.at("parameter").as_array()) {
      for (const auto& [k, v] : p.as_object()) {
        if (k != "name") out[std::string(p.at("name").as_string())] = v;
      }
    }
    return out;
  };
  for (int i = 0; i < 200 && state()["state"] == json::value("running"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto done = state();
  EXPECT_EQ(done["state"], json::value("completed"));
  EXPECT_EQ(done["total"].as_int64(), 1200);
  EXPECT_EQ(done["done"].as_int64(), 1200);
  EXPECT_EQ(Ids("Patient?gender=female").size(), 400u);  // every third
  EXPECT_EQ(Ids("Patient?gender=male").size(), 800u);
  // Reindexing again adds nothing twice.
  ASSERT_EQ(Do("POST", "/$reindex").status, 202);
  for (int i = 0; i < 200 && state()["state"] == json::value("running"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(Ids("Patient?gender=female").size(), 400u);
  EXPECT_EQ(Do("POST", "/Nope/$reindex").status, 404);
}

// On real Synthea data: totals the server gives against counts taken here by walking the
// source bundles' JSON.
TEST_P(SearchTest, SyntheaTotalsMatchCountsFromTheSourceBundles) {
  std::filesystem::path dir = std::filesystem::path(TAPROOT_FIXTURES) / "bundles";
  std::vector<json::value> loaded;
  int patients = 0;
  std::vector<std::filesystem::path> files;
  for (auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  // Reference data first (practitioners, organisations), then five patients.
  std::stable_partition(files.begin(), files.end(), [](const std::filesystem::path& p) {
    return p.filename().string().find("Information") != std::string::npos;
  });
  for (const auto& f : files) {
    bool reference = f.filename().string().find("Information") != std::string::npos;
    if (!reference && patients == 5) continue;
    std::string text = testing::ReadFileText(f);
    FhirResponse r = Do("POST", "", text, {{"prefer", "return=minimal"}});
    ASSERT_EQ(r.status, 200) << f;
    loaded.push_back(*ParseJson(text));
    if (!reference) ++patients;
  }
  // Counting by walking the JSON.
  auto count = [&](const std::string& type, const std::function<bool(const json::object&)>& f) {
    int64_t n = 0;
    for (const auto& b : loaded) {
      for (const auto& e : b.at("entry").as_array()) {
        const json::object& r = e.at("resource").as_object();
        if (r.at("resourceType").as_string() == type && f(r)) ++n;
      }
    }
    return n;
  };
  auto has_code = [](const json::object& cc_holder, const char* key, const char* system,
                     const char* code) {
    const json::value* cc = cc_holder.if_contains(key);
    if (!cc) return false;
    for (const auto& c : cc->at("coding").as_array()) {
      if (c.at("system").as_string() == system && c.at("code").as_string() == code) return true;
    }
    return false;
  };
  auto total = [&](const std::string& query) {
    FhirResponse r =
        Do("GET", "/" + query + "&_summary=count", "", {{"prefer", "handling=strict"}});
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).at("total").as_int64();
  };
  // The code of the first observation in the data, and how many observations carry it.
  std::string code;
  count("Observation", [&](const json::object& o) {
    if (code.empty()) code = std::string(o.at("code").at("coding").at(0).at("code").as_string());
    return false;
  });
  int64_t with_code = count("Observation", [&](const json::object& o) {
    return has_code(o, "code", "http://loinc.org", code.c_str());
  });
  EXPECT_GT(with_code, 0);
  EXPECT_EQ(total("Observation?code=http://loinc.org|" + code), with_code);
  EXPECT_EQ(total("Observation?code=" + code), with_code);
  int64_t female = count("Patient", [](const json::object& p) {
    return p.if_contains("gender") && p.at("gender").as_string() == "female";
  });
  EXPECT_EQ(total("Patient?gender=female"), female);
  // Encounters starting in 2015 or later: the period's start at day precision or finer; a
  // period that ends after 2015 also overlaps ge2015 (R4: the range above intersects).
  int64_t since2015 = count("Encounter", [](const json::object& e) {
    const json::value* p = e.if_contains("period");
    if (!p) return false;
    std::string end(p->as_object().if_contains("end") ? p->at("end").as_string()
                                                      : p->at("start").as_string());
    return end.substr(0, 4) >= "2015";
  });
  EXPECT_EQ(total("Encounter?date=ge2015-01-01"), since2015);
  // Observations with a numeric value above 100 (any unit).
  int64_t above100 = count("Observation", [](const json::object& o) {
    const json::value* q = o.if_contains("valueQuantity");
    return q && q->as_object().if_contains("value") && q->at("value").to_number<double>() > 100;
  });
  EXPECT_EQ(total("Observation?value-quantity=gt100"), above100);
  // Every observation refers to a patient: chained on gender, it splits by the patients' gender.
  int64_t all_obs = count("Observation", [](const json::object&) { return true; });
  EXPECT_EQ(total("Observation?subject:Patient.gender=female") +
                total("Observation?subject:Patient.gender=male"),
            all_obs);
}

TEST_P(SearchTest, FullTextOfNarrativeAndContent) {
  EXPECT_EQ(Status("Condition?_content=x"), 400);  // not indexed unless switched on
  search::SetContentIndexing(true);
  Put("Condition", "c1", R"({"resourceType":"Condition","id":"c1",
      "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Acute <b>asthma</b> &amp; wheeze</p></div>"},
      "code":{"text":"Asthma"},"subject":{"reference":"Patient/p"}})");
  Put("Condition", "c2", R"({"resourceType":"Condition","id":"c2",
      "code":{"text":"Chronic Obstructive Pulmonary Disease"},"note":[{"text":"Smoker, café owner"}],
      "subject":{"reference":"Patient/p"}})");
  EXPECT_EQ(Ids("Condition?_text=asthma"), (Set{"c1"}));
  EXPECT_EQ(Ids("Condition?_text=acute wheeze"), (Set{"c1"}));  // every word
  EXPECT_EQ(Ids("Condition?_text=pulmonary"), (Set{}));         // c2 has no narrative
  EXPECT_EQ(Ids("Condition?_content=pulmonary"), (Set{"c2"}));  // but it has the words
  EXPECT_EQ(Ids("Condition?_content=CAFE"), (Set{"c2"}));       // case and accents ignored
  EXPECT_EQ(Ids("Condition?_content=asthma,smoker"), (Set{"c1", "c2"}));  // OR
  EXPECT_EQ(Ids("Condition?_content=\"asthma\" OR NOT x"), (Set{}));      // no query syntax passes
  EXPECT_EQ(Ids("Condition?_text:missing=true"), (Set{"c2"}));
  EXPECT_EQ(Status("Condition?_content=%20-%20"), 400);  // no words
  search::SetContentIndexing(false);
}

TEST_P(SearchTest, CompositeParameters) {
  // Blood pressure: systolic 120 and diastolic 80 (components); a heart rate of 72 (value).
  Put("Observation", "bp", R"({"resourceType":"Observation","id":"bp","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
      "component":[
        {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
         "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
        {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
         "valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})");
  Put("Observation", "hr", R"({"resourceType":"Observation","id":"hr","status":"final",
      "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
      "valueQuantity":{"value":72,"system":"http://unitsofmeasure.org","code":"/min"}})");
  EXPECT_EQ(Ids("Observation?code-value-quantity=http://loinc.org|8867-4$gt70"), (Set{"hr"}));
  EXPECT_EQ(Ids("Observation?code-value-quantity=8867-4$lt70"), (Set{}));
  // The pairing holds within a component: systolic above 100, yes; diastolic above 100, no.
  EXPECT_EQ(Ids("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100"),
            (Set{"bp"}));
  EXPECT_EQ(Ids("Observation?component-code-value-quantity=http://loinc.org|8462-4$gt100"),
            (Set{}));
  // UCUM applies to the quantity part: 16 kPa is about 120 mm[Hg].
  EXPECT_EQ(
      Ids("Observation?component-code-value-quantity=8480-6$gt15|http://unitsofmeasure.org|kPa"),
      (Set{"bp"}));
  EXPECT_EQ(Status("Observation?code-value-quantity=8867-4"), 400);  // no $second part
  // Values are ORed: either pairing matches.
  EXPECT_EQ(Ids("Observation?code-value-quantity=8867-4$lt70,http://loinc.org|8867-4$gt70"),
            (Set{"hr"}));
  EXPECT_EQ(Ids("Observation?component-code-value-quantity=8462-4$gt100,8480-6$gt100"),
            (Set{"bp"}));
  // Led by a reference (DocumentReference.relatesTo: target, then the relation code).
  Put("DocumentReference", "old", R"({"resourceType":"DocumentReference","id":"old",
      "status":"superseded","content":[{"attachment":{"url":"urn:a"}}]})");
  Put("DocumentReference", "new", R"({"resourceType":"DocumentReference","id":"new",
      "status":"current","content":[{"attachment":{"url":"urn:b"}}],
      "relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/old"}}]})");
  EXPECT_EQ(Ids("DocumentReference?relationship=DocumentReference/old$replaces"), (Set{"new"}));
  EXPECT_EQ(Ids("DocumentReference?relationship=old$replaces"), (Set{"new"}));
  EXPECT_EQ(Ids("DocumentReference?relationship=DocumentReference/old$appends"), (Set{}));
  EXPECT_EQ(Ids("DocumentReference?relationship=DocumentReference/new$replaces"), (Set{}));
  // R4 writes `Observation.component.value as Quantity`: indexing applies it to each component.
  EXPECT_EQ(Ids("Observation?component-value-quantity=gt100"), (Set{"bp"}));
  EXPECT_EQ(Ids("Observation?component-value-quantity=79|http://unitsofmeasure.org|mm[Hg]"),
            (Set{}));
  EXPECT_EQ(Ids("Observation?component-value-quantity=80|http://unitsofmeasure.org|mm[Hg]"),
            (Set{"bp"}));
  // combo-* parameters are the value and the components together (read from their rows).
  EXPECT_EQ(Ids("Observation?combo-code=http://loinc.org|8480-6"), (Set{"bp"}));
  EXPECT_EQ(Ids("Observation?combo-code=8867-4,85354-9"), (Set{"bp", "hr"}));
  EXPECT_EQ(Ids("Observation?combo-value-quantity=gt100"), (Set{"bp"}));
  EXPECT_EQ(Ids("Observation?combo-value-quantity=lt75"), (Set{"hr"}));
  EXPECT_EQ(Ids("Observation?combo-value-quantity=lt75&combo-code=8867-4"), (Set{"hr"}));
  EXPECT_EQ(Ids("Observation?combo-code-value-quantity=8480-6$gt100,8867-4$gt70"),
            (Set{"bp", "hr"}));
  EXPECT_EQ(Ids("Observation?combo-code-value-quantity=8462-4$gt100"), (Set{}));
  EXPECT_EQ(Ids("Observation?combo-value-quantity:missing=false"), (Set{"bp", "hr"}));
  EXPECT_EQ(Ids("Observation?combo-value-concept:missing=true"), (Set{"bp", "hr"}));
  // Sorted by the smallest code of each: bp has 8462-4, hr 8867-4.
  json::value sorted = Body(Do("GET", "/Observation?_sort=combo-code&code=85354-9,8867-4"));
  ASSERT_EQ(sorted.at("entry").as_array().size(), 2u);
  EXPECT_EQ(sorted.at("entry").at(0).at("resource").at("id"), "bp");
  sorted = Body(Do("GET", "/Observation?_sort=-combo-code&code=85354-9,8867-4"));
  EXPECT_EQ(sorted.at("entry").at(0).at("resource").at("id"), "hr");
}

TEST_P(SearchTest, SummaryAndElements) {
  Put("Patient", "s", R"({"resourceType":"Patient","id":"s",
      "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"},
      "name":[{"family":"Ash"}],"gender":"female","maritalStatus":{"text":"M"},
      "photo":[{"contentType":"image/png","data":"AAAA"}]})");
  auto keys = [&](const std::string& query) {
    std::set<std::string> out;
    FhirResponse r = Do("GET", "/" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    json::value b = Body(r);
    const json::object* res = &b.as_object();
    if (auto* e = b.as_object().if_contains("entry")) {
      res = &e->as_array().at(0).at("resource").as_object();
    }
    for (const auto& kv : *res) out.insert(std::string(kv.key()));
    bool subsetted = res->at("meta").as_object().if_contains("tag") != nullptr;
    if (subsetted) out.insert("(SUBSETTED)");
    return out;
  };
  using S = std::set<std::string>;
  // R4 marks name and gender isSummary, maritalStatus and photo not.
  EXPECT_EQ(keys("Patient?_id=s&_summary=true"),
            (S{"resourceType", "id", "meta", "name", "gender", "(SUBSETTED)"}));
  EXPECT_EQ(keys("Patient?_id=s&_summary=text"),
            (S{"resourceType", "id", "meta", "text", "(SUBSETTED)"}));
  EXPECT_EQ(keys("Patient?_id=s&_summary=data"), (S{"resourceType", "id", "meta", "name", "gender",
                                                    "maritalStatus", "photo", "(SUBSETTED)"}));
  EXPECT_EQ(keys("Patient?_id=s&_elements=gender,Patient.photo"),
            (S{"resourceType", "id", "meta", "gender", "photo", "(SUBSETTED)"}));
  EXPECT_EQ(keys("Patient?_id=s&_summary=false"),
            (S{"resourceType", "id", "meta", "text", "name", "gender", "maritalStatus", "photo"}));
  EXPECT_EQ(keys("Patient/s?_summary=true"),
            (S{"resourceType", "id", "meta", "name", "gender", "(SUBSETTED)"}));
  EXPECT_EQ(Status("Patient?_summary=maybe"), 400);
  // _total=none leaves the total out.
  json::value none = Body(Do("GET", "/Patient?_total=none"));
  EXPECT_FALSE(none.as_object().contains("total"));
}

TEST_P(SearchTest, ExplainShowsPlansAndTimings) {
  Put("Patient", "x", R"({"resourceType":"Patient","id":"x","gender":"female"})");
  FhirResponse r = Do("GET", "/Patient?gender=female&_explain=true");
  ASSERT_EQ(r.status, 200);
  json::value b = Body(r);
  EXPECT_EQ(b.at("resourceType"), "Parameters");
  EXPECT_EQ(b.at("parameter").at(0).at("valueInteger").as_int64(), 1);  // the total
  std::string plan(b.at("parameter").at(2).at("valueString").as_string());
  EXPECT_NE(plan.find("idx_token"), std::string::npos) << plan;  // driven from the token index
  EXPECT_NE(plan.find("micros"), std::string::npos);
}

// Many distinct search shapes: the store's statement cache stays bounded (the fuzzer saw it
// grow without limit) and evicting idle statements never breaks a search.
TEST_P(SearchTest, ManySearchShapes) {
  Put("Patient", "z", R"({"resourceType":"Patient","id":"z","gender":"female","active":true,
      "name":[{"family":"Zed","given":["Zoe"]}],"birthDate":"1970-01-01"})");
  const char* parts[] = {"gender=female",    "active=true",     "family=zed", "given=zoe",
                         "birthdate=1970",   "name=z",          "_id=z",      "gender:not=male",
                         "family:exact=Zed", "birthdate=ge1960"};
  for (int i = 1; i < 1024; i += 1) {
    std::string q = "Patient?";
    for (int b = 0; b < 10; ++b) {
      if (i & (1 << b)) q += std::string(parts[b]) + "&";
    }
    ASSERT_EQ(Ids(q), (Set{"z"})) << q;
  }
  std::string many = "Patient?family=";
  for (int i = 0; i < 101; ++i) many += "a" + std::to_string(i) + ",";
  EXPECT_EQ(Status(many + "zed"), 400);  // too many ORed values: a clear 400, not a 500
}

// Paging keeps the first page's snapshot: later pages neither skip nor repeat resources while
// others are created, deleted or changed.
TEST_P(SearchTest, PagesKeepTheirSnapshot) {
  for (const char* id : {"b", "c", "d"}) {
    Put("Patient", id,
        std::string(R"({"resourceType":"Patient","id":")") + id + R"(","gender":"female"})");
  }
  json::value first = Body(Do("GET", "/Patient?gender=female&_count=2"));
  EXPECT_EQ(first.at("total").as_int64(), 3);
  std::string next;
  for (const auto& l : first.at("link").as_array()) {
    if (l.at("relation") == "next") next = std::string(l.at("url").as_string());
  }
  ASSERT_NE(next.find("_snapshot="), std::string::npos) << next;
  // Meanwhile: a new patient that sorts first, one deleted, one no longer female.
  Put("Patient", "a", R"({"resourceType":"Patient","id":"a","gender":"female"})");
  ASSERT_EQ(Do("DELETE", "/Patient/d").status, 204);
  Put("Patient", "c", R"({"resourceType":"Patient","id":"c","gender":"male"})");
  json::value second = Body(Do("GET", next.substr(next.find("/Patient"))));
  EXPECT_EQ(second.at("total").as_int64(), 3);
  ASSERT_EQ(second.at("entry").as_array().size(), 1u);
  EXPECT_EQ(second.at("entry").at(0).at("resource").at("id"), "d");  // as it was then
  // A new search sees the store as it is now.
  EXPECT_EQ(Ids("Patient?gender=female"), (Set{"a", "b"}));
}

TEST_P(SearchTest, NextLinksVisitEveryMatchOnce) {
  Set expected;
  for (int i = 0; i < 25; ++i) {
    std::string id = "p" + std::to_string(i);
    Put("Patient", id, R"({"resourceType":"Patient","id":")" + id + R"(","gender":"other"})");
    expected.insert(id);
  }
  Set seen;
  int pages = 0;
  std::string url = "/Patient?gender=other&_count=10";
  while (!url.empty() && pages < 10) {
    json::value page = Body(Do("GET", url));
    ++pages;
    EXPECT_EQ(page.at("total").as_int64(), 25);
    if (const auto* entries = page.as_object().if_contains("entry")) {
      for (const auto& e : entries->as_array()) {
        std::string id(e.at("resource").at("id").as_string());
        EXPECT_TRUE(seen.insert(id).second) << id << " returned twice";
      }
    }
    url.clear();
    for (const auto& l : page.at("link").as_array()) {
      if (l.at("relation") == "next") {
        std::string next(l.at("url").as_string());
        EXPECT_NE(next.find("_after="), std::string::npos) << next;
        url = next.substr(next.find("/Patient"));
      }
    }
    // A write between pages changes nothing for this walk (it reads the first page's snapshot).
    if (pages == 1)
      Put("Patient", "late", R"({"resourceType":"Patient","id":"late","gender":"other"})");
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, expected);
}

TEST_P(SearchTest, BadAndUnsupportedParameters) {
  EXPECT_EQ(Status("Patient?family:fuzzy=x"), 400);  // unknown modifier, strict
  EXPECT_EQ(Status("Patient?nonsense=x"), 400);
  EXPECT_EQ(Status("Patient?address:missing=maybe"), 400);
  // Lenient (the default): ignored, and said so in an OperationOutcome entry.
  FhirResponse r = Do("GET", "/Patient?family:fuzzy=x");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("family:fuzzy"), std::string::npos);
}

}  // namespace
}  // namespace taproot::api
