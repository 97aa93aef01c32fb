// JSON Patch (RFC 6902) applied to a Boost.JSON document, all or nothing: the operations are
// applied to a copy and the copy is returned only if every operation succeeded.
// Pure function; thread-safe.
#pragma once

#include <boost/json/value.hpp>

#include "common/status.h"

namespace taproot::fhir {

// `patch` must be a JSON array of operation objects. On failure the status says which operation
// (by index) failed and why; `document` is never modified.
Result<boost::json::value> ApplyJsonPatch(const boost::json::value& document,
                                          const boost::json::value& patch);

}  // namespace taproot::fhir
