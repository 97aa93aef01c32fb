// _summary and _elements (R4 search 3.1.1.5.x): the part of each resource a client asked for,
// marked with the SUBSETTED tag so nobody mistakes it for the whole. _summary=true keeps the
// elements the R4 definitions mark isSummary; text keeps the narrative and the mandatory
// elements; data drops the narrative; _elements keeps the named elements and the mandatory ones.
// Filtering is on top-level elements. Internal to api/; pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/request.h"
#include "common/status.h"
#include "fhir/model.h"

namespace taproot::api::internal {

struct Subset {
  enum class Summary { kNone, kTrue, kText, kData, kFalse, kCount };
  Summary summary = Summary::kNone;
  std::vector<std::string> elements;
  bool active() const {
    return summary == Summary::kTrue || summary == Summary::kText || summary == Summary::kData ||
           !elements.empty();
  }
};

// From _summary and _elements; an unknown _summary value is an error.
Result<Subset> ParseSubset(const Params& params);

// The resource (stored JSON text with its meta) reduced to the subset; unchanged if none.
std::string ApplySubset(const fhir::Model& model, const std::string& json_text,
                        const Subset& subset);

}  // namespace taproot::api::internal
