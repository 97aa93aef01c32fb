// History (instance, type, system) and search Bundles. Internal to api/.
#pragma once

#include <string>

#include "api/internal.h"

namespace taproot::api::internal {

// type and id may be empty (system or type history). Query: _count, _since, _at, and the
// server's paging cursor _before.
Result<std::string> HistoryBundle(store::ReadView& view, const RequestContext& ctx,
                                  const FhirRequest& req, const std::string& type,
                                  const std::string& id);

// A searchset Bundle; `params` are the decoded search parameters (from the URL or a form body).
Result<std::string> SearchBundle(store::ReadView& view, const fhir::Model& model,
                                 const RequestContext& ctx, const FhirRequest& req,
                                 const std::string& type, const Params& params);

}  // namespace taproot::api::internal
