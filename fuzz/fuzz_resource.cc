// libFuzzer: arbitrary bytes as a request body -> JSON parse -> R4 validation. Must never crash,
// hang or leak, whatever the input.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/json.h"
#include "fhir/model.h"
#include "fhir/validator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const taproot::fhir::Model& model = taproot::fhir::R4();
  auto doc = taproot::ParseJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (doc.ok()) {
    taproot::fhir::ValidateOptions options;
    options.check_required = size % 2 == 0;
    (void)taproot::fhir::ValidateResource(model, *doc, options);
  }
  return 0;
}
