// libFuzzer: the UCUM unit parser and the narrative XHTML checker. Neither may crash, hang or
// leak; a unit that parses converts to itself unchanged.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fhir/narrative.h"
#include "fhir/ucum.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  auto unit = taproot::fhir::ucum::Parse(s);
  if (unit.ok() && std::isfinite(unit->factor) && unit->factor != 0) {
    auto same = taproot::fhir::ucum::Convert(2.5, s, s);
    if (!same || *same != 2.5) std::abort();
  }
  (void)taproot::fhir::CheckNarrative(s);
  return 0;
}
