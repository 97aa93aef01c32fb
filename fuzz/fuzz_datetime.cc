// libFuzzer: FHIR date/dateTime/instant parsing and the primitive checks; a value that parses must
// format and parse back to the same instant.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/clock.h"
#include "fhir/primitives.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto t = taproot::ParseFhirDateTime(s);
  if (t.ok() && *t >= 0 && *t < 253402300800LL * 1000000) {
    auto back = taproot::ParseFhirDateTime(taproot::FormatInstant(*t));
    if (!back.ok() || *back != *t) std::abort();
  }
  (void)taproot::fhir::IsValidDateTime(s);
  (void)taproot::fhir::IsValidInstant(s);
  (void)taproot::fhir::IsValidTime(s);
  (void)taproot::fhir::IsValidId(s);
  return 0;
}
