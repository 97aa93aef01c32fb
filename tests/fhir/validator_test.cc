#include "fhir/validator.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "common/json.h"
#include "fhir/model.h"
#include "fhir/primitives.h"

namespace taproot::fhir {
namespace {

Status Check(const std::string& text, bool required = false) {
  ValidateOptions options;
  options.check_required = required;
  return ValidateResource(R4(), *ParseJson(text), options);
}

// Every issue location, for asserting where the validator points.
std::vector<std::string> Where(const Status& s) {
  std::vector<std::string> out;
  for (const Issue& i : s.issues()) out.push_back(i.expression);
  return out;
}

TEST(ModelTest, KnowsEveryR4ResourceType) {
  const Model& m = R4();
  // profiles-resources.json holds 149 resource StructureDefinitions; Resource and
  // DomainResource are abstract, leaving 146 concrete types (Binary, Bundle and Parameters
  // included).
  EXPECT_EQ(m.ResourceTypes().size(), 146u);
  EXPECT_NE(m.FindResource("Patient"), nullptr);
  EXPECT_NE(m.FindResource("MedicinalProductPharmaceutical"), nullptr);
  EXPECT_EQ(m.FindResource("DomainResource"), nullptr);  // abstract
  EXPECT_EQ(m.FindResource("HumanName"), nullptr);       // a data type
  const TypeDef* obs = m.FindResource("Observation");
  ASSERT_NE(obs->FindProperty("valueQuantity"), nullptr);
  EXPECT_EQ(obs->FindProperty("valueQuantity")->type->name, "Quantity");
  EXPECT_EQ(obs->FindProperty("valueFoo"), nullptr);
  EXPECT_TRUE(obs->FindProperty("component")->element->is_array);
}

TEST(ValidatorTest, AcceptsAValidPatient) {
  Status s = Check(R"({"resourceType":"Patient","id":"p1","active":true,
    "name":[{"family":"Smith","given":["Ann","B"]}],"birthDate":"1970-02-28",
    "_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"approx"}]},
    "contact":[{"name":{"text":"Bob"}}],
    "contained":[{"resourceType":"Organization","id":"o1","name":"Org"}]})");
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(ValidatorTest, ReportsEachProblemWithItsLocation) {
  Status s = Check(R"({"resourceType":"Patient","active":"yes","birthDate":"1970-02-30",
    "name":[{"given":"Ann"}],"foo":1,"gender":""})");
  EXPECT_EQ(s.code(), StatusCode::kInvalid);
  EXPECT_EQ(Where(s),
            (std::vector<std::string>{"Patient.active", "Patient.birthDate",
                                      "Patient.name[0].given", "Patient.foo", "Patient.gender"}));
}

TEST(ValidatorTest, UnknownResourceTypeAndMissingType) {
  EXPECT_NE(Check(R"({"resourceType":"Patientt"})").message().find("not an R4 resource type"),
            std::string::npos);
  EXPECT_FALSE(Check(R"({"id":"x"})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"DomainResource"})").ok());
}

TEST(ValidatorTest, InvalidIds) {
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","id":"has space"})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","id":"a_b"})").ok());
  EXPECT_FALSE(
      Check(std::string(R"({"resourceType":"Patient","id":")") + std::string(65, 'a') + "\"}")
          .ok());
  EXPECT_TRUE(Check(R"({"resourceType":"Patient","id":"A-b.9"})").ok());
}

TEST(ValidatorTest, RequiredElementsAndChoices) {
  // Observation needs status and code.
  const char* no_status = R"({"resourceType":"Observation","valueQuantity":{"value":1}})";
  Status s = Check(no_status, /*required=*/true);
  EXPECT_EQ(Where(s), (std::vector<std::string>{"Observation.status", "Observation.code"}));
  // At write time cardinality minimums are left to $validate (as HAPI's parser does): some
  // official R4 examples break them and must still round-trip.
  EXPECT_TRUE(Check(no_status).ok());
  EXPECT_TRUE(Check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
                        "valueString":"ok","effectiveDateTime":"2020-01-01T10:00:00Z"})")
                  .ok());
  // A wrong choice suffix is an unknown element.
  EXPECT_FALSE(Check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
                         "valueBanana":"ok"})")
                   .ok());
}

TEST(ValidatorTest, ArraysVersusSingleValues) {
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","name":{"family":"x"}})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","gender":["male"]})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","name":[]})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","name":[{}]})").ok());
  EXPECT_FALSE(Check(R"({"resourceType":"Patient","name":[null]})").ok());
}

TEST(ValidatorTest, NumbersAndPrimitives) {
  auto obs = [](const std::string& value) {
    return Check(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},)" + value +
                 "}");
  };
  EXPECT_TRUE(obs(R"("valueInteger":5)").ok());
  EXPECT_FALSE(obs(R"("valueInteger":5.5)").ok());
  EXPECT_FALSE(obs(R"("valueInteger":"5")").ok());
  EXPECT_FALSE(obs(R"("valueInteger":3000000000)").ok());
  EXPECT_TRUE(obs(R"("valueQuantity":{"value":5.25,"unit":"mg"})").ok());
  EXPECT_FALSE(obs(R"("valueQuantity":{"value":"5"})").ok());
  EXPECT_FALSE(obs(R"("valueDateTime":"2020-01-01T10:00")").ok());
  EXPECT_TRUE(obs(R"("valueTime":"10:00:00")").ok());
  EXPECT_FALSE(obs(R"("valueBoolean":1)").ok());
  EXPECT_FALSE(obs(R"("issued":"2020-01-01")").ok());  // an instant needs a time and zone
}

TEST(PrimitivesTest, Dates) {
  EXPECT_TRUE(IsValidDate("2024"));
  EXPECT_TRUE(IsValidDate("2024-02-29"));
  EXPECT_FALSE(IsValidDate("2023-02-29"));
  EXPECT_FALSE(IsValidDate("2024-2-1"));
  EXPECT_TRUE(IsValidDateTime("2024-02-01T00:00:00.123+01:00"));
  EXPECT_FALSE(IsValidDateTime("2024-02T10:00:00Z"));
  EXPECT_TRUE(IsValidInstant("2024-02-01T00:00:00Z"));
  EXPECT_FALSE(IsValidInstant("2024-02-01"));
}

}  // namespace
}  // namespace taproot::fhir
