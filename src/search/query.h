// Parsing FHIR search parameters (already percent-decoded name/value pairs) into a
// store::SearchQuery. Supported today: _id, identifier (token: code, system|code, |code),
// _lastUpdated (with eq/ge/gt/le/lt prefixes), _count and the paging offset. Everything else
// is reported as unsupported: an error in strict handling, a warning otherwise.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "fhir/model.h"
#include "fhir/terminology.h"
#include "store/store.h"

namespace taproot::search {

using Params = std::vector<std::pair<std::string, std::string>>;

// _include (reverse = false) or _revinclude (reverse = true): resources of `source_type` that
// reference through `param` (every reference parameter when empty, for "*"), optionally only
// those of `target_type`; with iterate, applied again to what it included.
struct Include {
  bool reverse = false;
  bool iterate = false;
  std::string source_type;
  std::string param;
  std::string target_type;
};

struct ParsedSearch {
  store::SearchQuery query;
  std::vector<Include> includes;
  Params used;                       // the parameters applied, in order, for the self link
  std::vector<std::string> ignored;  // "name: why" for lenient handling
};

constexpr int64_t kDefaultCount = 20;
constexpr int64_t kMaxCount = 1000;

// `type` may be empty for a whole-system search. With strict = true any unknown or unsupported
// parameter is a kInvalid error naming it.
// `terms` answers token :in, :not-in, :below and :above (the R4 value sets and code systems when
// null; the server passes one that also reads its own).
Result<ParsedSearch> ParseSearch(const fhir::Model& model, const std::string& type,
                                 const Params& params, bool strict,
                                 const fhir::Terminology* terms = nullptr);

// Parses a non-negative integer parameter value (_count, _offset, paging cursors).
Result<int64_t> ParseNonNegative(const std::string& name, const std::string& value);

// Parses "a=1&b=2" (percent-encoded, as in If-None-Exist or a conditional reference).
Result<Params> ParseQueryString(std::string_view query);

}  // namespace taproot::search
