// Syntax of FHIR primitive values in JSON (http://hl7.org/fhir/R4/datatypes.html): which JSON
// kind each primitive takes and the lexical rules for strings (dates, ids, codes, uris...).
// Pure functions; thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

namespace taproot::fhir {

// Returns empty if `value` is a valid JSON representation of FHIR primitive `type` ("boolean",
// "date", "id", ...); otherwise a reason such as "'2020-13-01' is not a valid date".
std::string CheckPrimitive(std::string_view type, const boost::json::value& value);

bool IsValidId(std::string_view id);
bool IsValidDate(std::string_view s);
bool IsValidDateTime(std::string_view s);
bool IsValidInstant(std::string_view s);
bool IsValidTime(std::string_view s);

}  // namespace taproot::fhir
