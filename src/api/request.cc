#include "api/request.h"

namespace taproot::api {

const std::string& FhirRequest::Header(std::string_view name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return kEmpty;
}

const std::string* FhirRequest::Query(std::string_view name) const {
  for (const auto& [k, v] : query)
    if (k == name) return &v;
  return nullptr;
}

void FhirResponse::SetHeader(std::string name, std::string value) {
  for (auto& [k, v] : headers) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

const std::string* FhirResponse::FindHeader(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

}  // namespace taproot::api
