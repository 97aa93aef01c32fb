// JSON helpers over Boost.JSON, the one mutable DOM Taproot uses: parsing with positioned
// errors, compact and pretty serialisation, and small accessors.
// Pure functions; thread-safe.
#pragma once

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace taproot {

namespace json = boost::json;

// Parses text as one JSON value; on failure the OperationOutcome names the line and column.
Result<json::value> ParseJson(std::string_view text);
std::string SerializeJson(const json::value& v);
// Two-space indented JSON, for `_pretty=true`.
std::string PrettyJson(const json::value& v);
// Re-indents already serialised JSON text without building a DOM.
std::string PrettyJsonText(std::string_view compact);

// Returns the string at obj[key] or empty if absent or not a string.
std::string_view GetString(const json::object& obj, std::string_view key);

}  // namespace taproot
