// `taproot fhirpath` on the command line.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "test_util.h"

namespace taproot {
namespace {

using Output = testing::CommandOutput;
Output RunCli(const std::string& args) {
  return testing::RunCommand(std::string(TAPROOT_BINARY) + " fhirpath " + args);
}

const std::string kPatient =
    std::string(TAPROOT_SOURCE_DIR) + "/tests/fixtures/fhirpath/patient-example.json";

TEST(FhirPathCliTest, TypedOutputAsTheSuiteWritesIt) {
  Output o =
      RunCli("--typed --input " + kPatient + " \"birthDate | 1 '1' | true | 3 | name[0].use\"");
  EXPECT_EQ(o.exit_code, 0) << o.text;
  EXPECT_EQ(o.text, R"([{"type":"date","value":"@1974-12-25"},{"type":"Quantity","value":"1 '1'"},)"
                    R"({"type":"boolean","value":true},{"type":"integer","value":3},)"
                    R"({"type":"code","value":"official"}])"
                    "\n");
}

TEST(FhirPathCliTest, UntypedAndErrors) {
  EXPECT_EQ(RunCli("--input " + kPatient + " \"name.given.take(2)\"").text,
            "[\"Peter\",\"James\"]\n");
  Output bad = RunCli("\"2 + \"");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.text.find("position 4"), std::string::npos) << bad.text;
  // Decimals print as decimal text, not as a double's exponent form.
  EXPECT_EQ(RunCli("\"1.50 | 0.0\"").text, "[1.50,0.0]\n");
  EXPECT_EQ(RunCli("\"(-0.0034).lowBoundary(1)\"").text, "[-0.0]\n");
}

TEST(FhirPathCliTest, BatchWithStrictMode) {
  std::string cmd = "printf '%s\\n' '{\"expression\":\"name.given1\",\"input\":\"" + kPatient +
                    "\",\"mode\":\"strict\"}' '{\"expression\":\"name.given1\",\"input\":\"" +
                    kPatient + "\"}' | " + TAPROOT_BINARY + " fhirpath --batch";
  std::string text = testing::RunCommand(cmd).text;
  EXPECT_EQ(text, "{\"error\":\"'given1' is not an element of HumanName\"}\n[]\n");
}

TEST(FhirPathCliTest, BatchChecksStaticTypesAndOrder) {
  std::string cmd =
      "printf '%s\\n' "
      "'{\"expression\":\"(Patient.name.first() as "
      "Period).start\",\"mode\":\"strict\",\"input\":\"" +
      kPatient +
      "\"}' '{\"expression\":\"(Patient.name.first() as Period).unit\",\"mode\":\"strict\","
      "\"input\":\"" +
      kPatient +
      "\"}' '{\"expression\":\"Patient.children().skip(1).count() > 0\","
      "\"checkOrderedFunctions\":true,\"input\":\"" +
      kPatient +
      "\"}' '{\"expression\":\"Patient.children().count() > 1\",\"checkOrderedFunctions\":true,"
      "\"input\":\"" +
      kPatient + "\"}' | " + TAPROOT_BINARY + " fhirpath --batch";
  std::string text = testing::RunCommand(cmd).text;
  EXPECT_EQ(text,
            "[]\n{\"error\":\"'unit' is not an element of Period\"}\n"
            "{\"error\":\"skip() depends on order, but the order of this collection is "
            "undefined\"}\n[true]\n");
}

}  // namespace
}  // namespace taproot
