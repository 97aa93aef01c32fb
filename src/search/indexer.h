// Search index extraction: which index rows a resource version contributes. This first version
// indexes the `identifier` token of every resource type that has one (enough for conditional
// create/update/delete and conditional references) and the canonical `url` of conformance
// resources (ValueSet?url=..., used by terminology); the search work replaces it with rows
// computed from every R4 SearchParameter's FHIRPath expression.
// Pure functions over the immutable model; thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <string_view>
#include <vector>

#include "fhir/model.h"
#include "store/store.h"

namespace taproot::search {

std::vector<store::IndexEntry> ExtractIndex(const fhir::Model& model, std::string_view type,
                                            const boost::json::object& resource);

// True if `param` is indexed for resources of `type` (besides _id and _lastUpdated, which every
// type has).
bool HasTokenParam(const fhir::Model& model, std::string_view type, std::string_view param);

}  // namespace taproot::search
