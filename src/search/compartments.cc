#include "search/compartments.h"

#include <algorithm>
#include <map>

#include "common/compress.h"
#include "common/embedded.h"
#include "common/json.h"
#include "common/log.h"
#include "fhir/model.h"
#include "search/indexer.h"
#include "search/params.h"

namespace taproot::search {
namespace {

struct Compartments {
  // compartment -> type -> params
  std::map<std::string, std::map<std::string, std::vector<std::string>, std::less<>>, std::less<>>
      params;
  std::map<std::string, std::vector<std::string>, std::less<>> types;
};

const Compartments& Get() {
  static const Compartments* c = [] {
    auto* out = new Compartments();
    auto text = ZstdDecompress(EmbeddedFile("r4/profiles-resources.json.zst"));
    auto bundle = text.ok() ? ParseJson(*text) : Result<json::value>(text.status());
    if (!bundle.ok() || !bundle->is_object()) {
      LogError("embedded R4 definitions are unreadable");
      std::abort();
    }
    const json::value* entries = FindKey(bundle->get_object(), "entry");
    for (const auto& e : entries && entries->is_array() ? entries->get_array() : json::array()) {
      const json::value* r = e.is_object() ? FindKey(e.get_object(), "resource") : nullptr;
      if (!r || !r->is_object() ||
          GetString(r->get_object(), "resourceType") != "CompartmentDefinition") {
        continue;
      }
      std::string code(GetString(r->get_object(), "code"));
      const json::value* resources = FindKey(r->get_object(), "resource");
      if (!resources || !resources->is_array()) continue;
      for (const auto& res : resources->get_array()) {
        if (!res.is_object()) continue;
        const json::value* params = FindKey(res.get_object(), "param");
        if (!params || !params->is_array() || params->get_array().empty()) continue;
        std::string type(GetString(res.get_object(), "code"));
        auto& list = out->params[code][type];
        for (const auto& p : params->get_array()) {
          if (p.is_string()) list.emplace_back(p.get_string());
        }
        out->types[code].push_back(type);
      }
      std::sort(out->types[code].begin(), out->types[code].end());
    }
    return out;
  }();
  return *c;
}

}  // namespace

bool IsCompartment(std::string_view type) { return Get().params.count(type) > 0; }

const std::vector<std::string>& CompartmentParams(std::string_view compartment,
                                                  std::string_view type) {
  static const std::vector<std::string> kNone;
  auto c = Get().params.find(compartment);
  if (c == Get().params.end()) return kNone;
  auto t = c->second.find(type);
  return t == c->second.end() ? kNone : t->second;
}

const std::vector<std::string>& CompartmentTypes(std::string_view compartment) {
  static const std::vector<std::string> kNone;
  auto c = Get().types.find(compartment);
  return c == Get().types.end() ? kNone : c->second;
}

std::string PatientKey(std::string_view type, std::string_view id,
                       const std::vector<store::IndexEntry>& rows,
                       const boost::json::value* resource) {
  if (type == "Patient") return std::string(id);
  auto first_patient = [](const std::vector<store::IndexEntry>& of, const std::string& param) {
    for (const store::IndexEntry& e : of) {
      if (e.kind == store::IndexKind::kReference && e.param == param && e.system == "Patient") {
        return e.value;
      }
    }
    return std::string();
  };
  for (const std::string& param : CompartmentParams("Patient", type)) {
    std::string key = first_patient(rows, param);
    if (key.empty() && resource) {
      if (const ParamDef* def = R4Params().Find(type, param)) {
        key = first_patient(ExtractParam(*def, *resource), param);
      }
    }
    if (!key.empty()) return key;
  }
  return {};
}

bool KeysPatient(std::string_view type, std::string_view param) {
  const std::vector<std::string>& links = CompartmentParams("Patient", type);
  if (links.empty() || type == "Patient") return false;
  // The element a reference parameter reads, if it reads exactly one: "Observation.subject"
  // from "Observation.subject" or "Observation.subject.where(resolve() is Patient)".
  auto element = [&](std::string_view code) -> std::string {
    const ParamDef* def = R4Params().Find(type, code);
    if (!def || def->type != ParamType::kReference) return {};
    std::string e = def->expression;
    static constexpr std::string_view kPatientOnly = ".where(resolve() is Patient)";
    if (e.size() > kPatientOnly.size() &&
        e.compare(e.size() - kPatientOnly.size(), kPatientOnly.size(), kPatientOnly) == 0) {
      e.resize(e.size() - kPatientOnly.size());
    }
    std::string prefix = std::string(type) + ".";
    if (e.rfind(prefix, 0) != 0) return {};
    std::string name = e.substr(prefix.size());
    if (name.empty() ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
            std::string::npos) {
      return {};
    }
    return name;
  };
  std::string first = element(links[0]);
  if (first.empty() || element(param) != first) return false;
  const fhir::TypeDef* def = fhir::R4().FindResource(type);
  const fhir::TypeDef::Property* prop = def ? def->FindProperty(first) : nullptr;
  return prop && !prop->element->is_array;
}

}  // namespace taproot::search
