// JSON helpers over Boost.JSON, the one mutable DOM Taproot uses: parsing with positioned
// errors, compact and pretty serialisation, and small accessors.
// Pure functions; thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/strings.h"

namespace taproot {

namespace json = boost::json;

// Parses text as one JSON value; on failure the OperationOutcome names the line and column.
// `storage` holds the DOM: a monotonic resource (one arena per document) lays it out in
// document order, which makes walking it (FHIRPath, indexing) several times faster than with the
// default heap, at the price of memory that is freed only with the whole document.
Result<json::value> ParseJson(std::string_view text, json::storage_ptr storage = {});
std::string SerializeJson(const json::value& v);
// Two-space indented JSON, for `_pretty=true`.
std::string PrettyJson(const json::value& v);
// Re-indents already serialised JSON text without building a DOM.
std::string PrettyJsonText(std::string_view compact);

// obj[key] or null. FHIR objects hold a few dozen keys at most, so a linear scan comparing
// lengths first beats hashing the key (Boost.JSON's find) by a wide margin on hot paths.
inline const json::value* FindKey(const json::object& obj, std::string_view key) {
  if (obj.size() > 48) return obj.if_contains(key);
  for (const auto& kv : obj) {
    std::string_view k = kv.key();
    if (k.size() == key.size() && (key.empty() || (k[0] == key[0] && SameText(k, key)))) {
      return &kv.value();
    }
  }
  return nullptr;
}

// Returns the string at obj[key] or empty if absent or not a string.
std::string_view GetString(const json::object& obj, std::string_view key);

}  // namespace taproot
