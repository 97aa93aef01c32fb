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
}

TEST(FhirPathCliTest, BatchWithStrictMode) {
  std::string cmd = "printf '%s\\n' '{\"expression\":\"name.given1\",\"input\":\"" + kPatient +
                    "\",\"mode\":\"strict\"}' '{\"expression\":\"name.given1\",\"input\":\"" +
                    kPatient + "\"}' | " + TAPROOT_BINARY + " fhirpath --batch";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  std::string text;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  pclose(p);
  EXPECT_EQ(text, "{\"error\":\"'given1' is not an element of HumanName\"}\n[]\n");
}

}  // namespace
}  // namespace taproot
