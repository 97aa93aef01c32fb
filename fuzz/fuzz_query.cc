// libFuzzer: a query string -> decoded parameters -> a search on Patient (lenient and strict).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fhir/model.h"
#include "search/query.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const taproot::fhir::Model& model = taproot::fhir::R4();
  auto params = taproot::search::ParseQueryString(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (params.ok()) {
    (void)taproot::search::ParseSearch(model, "Patient", *params, false);
    (void)taproot::search::ParseSearch(model, "Observation", *params, true);
  }
  return 0;
}
