// libFuzzer: an expression (before the first NUL) and a JSON resource (after it). Compiling and
// evaluating must never crash, hang or leak, whatever the input.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/json.h"
#include "fhirpath/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t split = in.find('\0');
  std::string_view expression = in.substr(0, split);
  auto compiled = taproot::fhirpath::Compile(expression);
  if (!compiled.ok()) return 0;
  boost::json::value resource = boost::json::object{{"resourceType", "Patient"}};
  if (split != std::string_view::npos) {
    auto parsed = taproot::ParseJson(in.substr(split + 1));
    if (parsed.ok()) resource = std::move(parsed).value();
  }
  (void)(*compiled)->Evaluate(resource);
  return 0;
}
