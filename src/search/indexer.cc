#include "search/indexer.h"

#include <boost/json.hpp>

#include "common/json.h"

namespace taproot::search {

bool HasTokenParam(const fhir::Model& model, std::string_view type, std::string_view param) {
  const fhir::TypeDef* t = model.FindResource(type);
  if (!t) return false;
  if (param == "identifier") {
    const fhir::TypeDef::Property* p = t->FindProperty("identifier");
    return p && p->type->name == "Identifier";
  }
  if (param == "url") {  // the canonical URL of conformance and knowledge resources
    const fhir::TypeDef::Property* p = t->FindProperty("url");
    return p && p->type->name == "uri" && !p->element->is_array;
  }
  return false;
}

std::vector<store::IndexEntry> ExtractIndex(const fhir::Model& model, std::string_view type,
                                            const json::object& resource) {
  std::vector<store::IndexEntry> out;
  if (HasTokenParam(model, type, "url")) {
    std::string_view url = GetString(resource, "url");
    if (!url.empty()) out.push_back({"url", "", std::string(url)});
  }
  if (!HasTokenParam(model, type, "identifier")) return out;
  auto* ids = resource.if_contains("identifier");
  if (!ids) return out;
  auto add = [&](const json::value& v) {
    if (!v.is_object()) return;
    std::string_view value = GetString(v.get_object(), "value");
    if (value.empty()) return;
    out.push_back(
        {"identifier", std::string(GetString(v.get_object(), "system")), std::string(value)});
  };
  if (ids->is_array()) {
    for (const auto& v : ids->get_array()) add(v);
  } else {
    add(*ids);
  }
  return out;
}

}  // namespace taproot::search
