// History (instance, type, system) and search Bundles. Internal to api/.
#pragma once

#include <string>

#include "api/internal.h"

namespace taproot::api::internal {

// type and id may be empty (system or type history). Query: _count, _since, _at, and the
// server's paging cursor _before.
// Asks the request's guard (if any) whether a resource may leave; it may redact `text`.
Result<bool> Release(store::ReadView& view, const RequestContext& ctx, std::string_view type,
                     std::string_view id, std::string& text);

Result<std::string> HistoryBundle(store::ReadView& view, const RequestContext& ctx,
                                  const FhirRequest& req, const std::string& type,
                                  const std::string& id);

// A compartment a search is limited to: Patient/123 in GET /Patient/123/Observation.
struct Compartment {
  std::string type;
  std::string id;
};

// A searchset Bundle; `params` are the decoded search parameters (from the URL or a form body).
// With a compartment, only resources in it match (and `type` must be able to be in it).
Result<std::string> SearchBundle(store::ReadView& view, const fhir::Model& model,
                                 const RequestContext& ctx, const FhirRequest& req,
                                 const std::string& type, const Params& params,
                                 const Compartment* compartment = nullptr);

// Patient/123/$everything: the patient and every resource in its compartment, newest types in
// type order, with _type, _since, _count and paging.
Result<std::string> EverythingBundle(store::ReadView& view, const RequestContext& ctx,
                                     const std::string& patient_id, const Params& params);

}  // namespace taproot::api::internal
