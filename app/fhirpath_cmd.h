// `taproot fhirpath`: evaluate FHIRPath expressions from the command line, one at a time or as a
// batch of JSON lines (for test harnesses and the comparison benchmark).
#pragma once

#include <string>

namespace taproot::app {

struct FhirPathOptions {
  std::string input;       // a JSON resource file; empty: evaluate against an empty object
  std::string expression;  // unless batch
  bool typed = false;
  bool batch = false;
};

int RunFhirPath(const FhirPathOptions& options);

}  // namespace taproot::app
