// Mapping of Status to HTTP status codes and FHIR OperationOutcome resources. One place, so that
// the same error always looks the same to a client.
// Pure functions; thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <string>

#include "api/request.h"
#include "common/status.h"

namespace taproot::api {

int HttpStatusFor(StatusCode code);
// The default OperationOutcome issue type for a status code ("invalid", "not-found", ...).
const char* IssueTypeFor(StatusCode code);
boost::json::value OperationOutcomeJson(const Status& status);
// A successful outcome with one informational issue.
boost::json::value InformationOutcome(const std::string& message);
FhirResponse ErrorResponse(const Status& status);

}  // namespace taproot::api
