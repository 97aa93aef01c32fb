// The CapabilityStatement: generated from what the engine implements and from the model, so it
// lists exactly what works.
#include "api/capability.h"

#include <boost/json.hpp>

#include "common/clock.h"
#include "search/indexer.h"
#include "search/params.h"

namespace taproot::api {

std::string BuildCapabilityStatement(const fhir::Model& model, const std::string& software) {
  json::array resources;
  for (const std::string& type : model.ResourceTypes()) {
    json::array interactions;
    for (const char* code : {"read", "vread", "update", "patch", "delete", "history-instance",
                             "history-type", "create", "search-type"}) {
      interactions.push_back(json::object{{"code", code}});
    }
    json::array params;
    params.push_back(
        json::object{{"name", "_id"},
                     {"type", "token"},
                     {"definition", "http://hl7.org/fhir/SearchParameter/Resource-id"}});
    params.push_back(
        json::object{{"name", "_lastUpdated"},
                     {"type", "date"},
                     {"definition", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}});
    static const char* kTypeNames[] = {"string",   "token", "reference", "date",   "number",
                                       "quantity", "uri",   "composite", "special"};
    json::array includes{"*"};
    for (const search::ParamDef* p : search::R4Params().ForType(type)) {
      if (p->type == search::ParamType::kReference && !p->branches.empty()) {
        includes.push_back(json::string(type + ":" + p->code));
      }
    }
    for (const search::ParamDef* p : search::R4Params().ForType(type)) {
      // Only what is indexed and searchable today.
      bool composite_ok =
          p->type != search::ParamType::kComposite ||
          (p->components.size() == 2 && p->components[0].param && p->components[1].param &&
           (p->components[0].param->type == search::ParamType::kToken ||
            p->components[0].param->type == search::ParamType::kReference));
      bool full_text = p->code == "_text" || (p->code == "_content" && search::ContentIndexing());
      if (!composite_ok || p->type == search::ParamType::kSpecial ||
          (p->branches.empty() && !full_text) || p->code == "_id" || p->code == "_lastUpdated") {
        continue;
      }
      params.push_back(json::object{{"name", p->code},
                                    {"type", kTypeNames[static_cast<int>(p->type)]},
                                    {"definition", p->url}});
    }
    resources.push_back(json::object{
        {"type", type},
        {"profile", "http://hl7.org/fhir/StructureDefinition/" + type},
        {"interaction", std::move(interactions)},
        {"versioning", "versioned-update"},
        {"readHistory", true},
        {"updateCreate", true},
        {"conditionalCreate", true},
        {"conditionalRead", "not-supported"},
        {"conditionalUpdate", true},
        {"conditionalDelete", "single"},
        {"searchInclude", std::move(includes)},
        {"searchParam", std::move(params)},
    });
  }
  json::object rest{
      {"mode", "server"},
      {"resource", std::move(resources)},
      {"interaction",
       json::array{json::object{{"code", "transaction"}}, json::object{{"code", "batch"}},
                   json::object{{"code", "history-system"}},
                   json::object{{"code", "search-system"}}}},
      {"searchParam", json::array{json::object{{"name", "_id"}, {"type", "token"}},
                                  json::object{{"name", "_lastUpdated"}, {"type", "date"}}}},
  };
  json::object cs{
      {"resourceType", "CapabilityStatement"},
      {"status", "active"},
      {"date", FormatInstant(NowMicros()).substr(0, 10)},
      {"publisher", "Taproot"},
      {"kind", "instance"},
      {"software", json::object{{"name", software}, {"version", TAPROOT_VERSION}}},
      {"implementation", json::object{{"description", "Taproot FHIR R4 server"}}},
      {"fhirVersion", "4.0.1"},
      {"format", json::array{"application/fhir+json", "application/json"}},
      {"patchFormat", json::array{"application/json-patch+json"}},
      {"rest", json::array{std::move(rest)}},
  };
  return json::serialize(cs);
}

}  // namespace taproot::api
