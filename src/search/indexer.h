// Search index extraction: which index rows a resource version contributes. Every search
// parameter of the resource's type (search/params.h) is evaluated with FHIRPath and each value
// it selects becomes typed rows (store::IndexEntry): strings folded for case- and
// accent-insensitive matching, tokens as system|code (plus their display text for :text),
// references as target type and id, dates as the microsecond range they cover, quantities as
// written and in UCUM base units. Runs outside the store's writer, in parallel.
//
// Pure functions over the immutable model and registry; thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <string_view>
#include <vector>

#include "fhir/model.h"
#include "store/store.h"

namespace taproot::search {

std::vector<store::IndexEntry> ExtractIndex(const fhir::Model& model, std::string_view type,
                                            const boost::json::value& resource);

struct ParamDef;
// The rows of one parameter (for _include: a reference parameter's targets).
std::vector<store::IndexEntry> ExtractParam(const ParamDef& param,
                                            const boost::json::value& resource);

// Whether _content (full text of every string of a resource) is indexed; off by default, as it
// makes writes about a quarter slower and the store twice as large. Set once at start-up
// (`taproot serve --index-content`), before any write.
void SetContentIndexing(bool on);
bool ContentIndexing();

// Whether every search parameter is indexed (the default). Off, only `identifier` is, which
// conditional references and creates need: for bulk loads that reindex afterwards
// (`--no-search-index`, POST /$reindex) and for measuring what indexing costs. Set once at
// start-up, before any write.
void SetSearchIndexing(bool on);
bool SearchIndexing();

// The system under which quantities are also indexed in UCUM base units.
inline constexpr std::string_view kUcumCanonicalSystem = "urn:taproot:ucum-canonical";
// ... and under the parameter's code with this suffix ("value-quantity:ucum").
inline constexpr std::string_view kUcumParamSuffix = ":ucum";

}  // namespace taproot::search
