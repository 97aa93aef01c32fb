#include "api/subset.h"

#include <boost/json.hpp>

#include "common/json.h"

namespace taproot::api::internal {

Result<Subset> ParseSubset(const Params& params) {
  Subset s;
  for (const auto& [k, v] : params) {
    if (k == "_summary") {
      if (v == "true") {
        s.summary = Subset::Summary::kTrue;
      } else if (v == "text") {
        s.summary = Subset::Summary::kText;
      } else if (v == "data") {
        s.summary = Subset::Summary::kData;
      } else if (v == "false") {
        s.summary = Subset::Summary::kFalse;
      } else if (v == "count") {
        s.summary = Subset::Summary::kCount;
      } else {
        return Status::Invalid("_summary takes true, text, data, count or false", "_summary");
      }
    } else if (k == "_elements") {
      for (size_t start = 0;;) {
        size_t comma = v.find(',', start);
        std::string e = v.substr(start, comma - start);
        // "Patient.name" and "name" both name the top-level element.
        if (size_t dot = e.find('.'); dot != std::string::npos) e = e.substr(dot + 1);
        if (!e.empty()) s.elements.push_back(e);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
  }
  return s;
}

std::string ApplySubset(const fhir::Model& model, const std::string& json_text,
                        const Subset& subset) {
  if (!subset.active()) return json_text;
  auto doc = ParseJson(json_text);
  if (!doc.ok() || !doc->is_object()) return json_text;
  json::object& r = doc->get_object();
  const fhir::TypeDef* type = model.FindResource(GetString(r, "resourceType"));
  if (!type) return json_text;
  auto element_of = [&](std::string_view key) -> const fhir::ElementDef* {
    if (!key.empty() && key[0] == '_') key.remove_prefix(1);
    const fhir::TypeDef::Property* p = type->FindProperty(key);
    return p ? p->element : nullptr;
  };
  json::object out;
  for (auto& kv : r) {
    std::string_view key = kv.key();
    std::string_view base = !key.empty() && key[0] == '_' ? key.substr(1) : key;
    bool keep = base == "resourceType" || base == "id" || base == "meta";
    const fhir::ElementDef* el = keep ? nullptr : element_of(key);
    if (!keep && el) {
      switch (subset.summary) {
        case Subset::Summary::kTrue:
          keep = el->summary;
          break;
        case Subset::Summary::kText:
          keep = base == "text" || el->min > 0;
          break;
        case Subset::Summary::kData:
          keep = base != "text";
          break;
        default:
          keep = el->min > 0;
          for (const auto& e : subset.elements) keep = keep || e == el->name;
          break;
      }
    }
    if (keep) out[key] = std::move(kv.value());
  }
  // Mark the result as a subset (R4: meta.tag SUBSETTED).
  json::object meta;
  if (auto* m = out.if_contains("meta"); m && m->is_object()) meta = m->get_object();
  json::array tags;
  if (auto* t = meta.if_contains("tag"); t && t->is_array()) tags = t->get_array();
  tags.push_back(
      json::object{{"system", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"},
                   {"code", "SUBSETTED"},
                   {"display", "Resource encoded in summary mode"}});
  meta["tag"] = std::move(tags);
  out["meta"] = std::move(meta);
  return json::serialize(out);
}

}  // namespace taproot::api::internal
