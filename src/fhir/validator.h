// Structural validation of a FHIR R4 resource in JSON form against the base model: known
// resource type, known elements (including value[x] choices and `_element` primitive
// extensions), array versus single cardinality, required elements, and primitive syntax. Every
// problem becomes an Issue with a FHIRPath-style location ("Patient.name[0].given[1]").
//
// Profile constraints (invariants, bindings) belong to the $validate work that builds on
// FHIRPath. Stateless; thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <vector>

#include "common/status.h"
#include "fhir/model.h"

namespace taproot::fhir {

struct ValidateOptions {
  size_t max_issues = 100;  // stop collecting after this many
  // Minimum cardinality (required elements). Off for writes: several official R4 examples lack
  // required elements, and FHIR servers accept them; profile validation reports them.
  bool check_required = false;
};

// Validates `resource` (a JSON object with resourceType). Returns OK or a kInvalid status holding
// every issue found.
Status ValidateResource(const Model& model, const boost::json::value& resource,
                        const ValidateOptions& options = {});

}  // namespace taproot::fhir
