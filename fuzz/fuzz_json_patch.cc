// libFuzzer: a document and a JSON Patch separated by a NUL byte; applying must never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/json.h"
#include "fhir/json_patch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t split = in.find('\0');
  if (split == std::string_view::npos) return 0;
  auto doc = taproot::ParseJson(in.substr(0, split));
  auto patch = taproot::ParseJson(in.substr(split + 1));
  if (doc.ok() && patch.ok()) (void)taproot::fhir::ApplyJsonPatch(*doc, *patch);
  return 0;
}
