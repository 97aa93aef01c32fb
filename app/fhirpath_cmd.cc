#include "fhirpath_cmd.h"

#include <boost/json.hpp>
#include <cstdio>
#include <iostream>
#include <map>

#include "common/files.h"
#include "common/json.h"
#include "fhirpath/engine.h"

namespace taproot::app {
namespace {

using fhirpath::Item;

// The type name as the official suite writes it (FHIR types as they are; System types in
// lower case, Quantity as is).
std::string TypedName(const Item& item) {
  if (item.IsNode()) return item.TypeName();
  std::string n = item.TypeName();
  if (n == "Quantity") return n;
  if (n == "DateTime") return "dateTime";
  n[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(n[0])));
  return n;
}

json::value Untyped(const Item& item) {
  if (item.IsNode() && item.value && (item.value->is_object() || item.value->is_array())) {
    return *item.value;
  }
  if (item.IsNode() && item.value && !item.value->is_string()) return *item.value;
  std::string text = fhirpath::ItemToString(item);
  if (item.kind == Item::Kind::kBoolean) return item.boolean;
  if (item.kind == Item::Kind::kInteger) return item.integer;
  if (item.kind == Item::Kind::kDecimal) return item.decimal;
  if (!text.empty() && text[0] == '@')
    text = text.substr(text.size() > 1 && text[1] == 'T' ? 2 : 1);
  return json::value(text);
}

json::value Typed(const Item& item) {
  json::object o;
  o["type"] = TypedName(item);
  if (item.kind == Item::Kind::kBoolean || item.kind == Item::Kind::kInteger) {
    o["value"] = Untyped(item);
  } else if (item.IsNode() && item.value && (item.value->is_bool() || item.value->is_int64())) {
    o["value"] = *item.value;
  } else if (item.IsNode() && item.value && item.value->is_object()) {
    o["value"] = *item.value;
  } else {
    o["value"] = fhirpath::ItemToString(item);
  }
  return o;
}

// The result as one JSON array. Decimals are written as their decimal text (1.5, 0.0), not as
// Boost.JSON writes doubles (1.5E0).
Result<std::string> Run(const std::string& expression, const json::value& input, bool typed,
                        bool strict, bool check_ordered = false) {
  ASSIGN_OR_RETURN(auto compiled, fhirpath::Compile(expression));
  fhirpath::EvalOptions options;
  options.strict = strict;
  options.check_ordered_functions = check_ordered;
  ASSIGN_OR_RETURN(fhirpath::Collection result, compiled->Evaluate(input, options));
  std::string out = "[";
  for (const Item& item : result) {
    if (out.size() > 1) out += ',';
    bool decimal = item.kind == Item::Kind::kDecimal ||
                   (item.IsNode() && item.value && item.value->is_double());
    out += !typed && decimal ? fhirpath::ItemToString(item)
                             : json::serialize(typed ? Typed(item) : Untyped(item));
  }
  out += ']';
  return out;
}

Result<json::value> LoadInput(const std::string& path) {
  if (path.empty()) return json::value(json::object{});
  std::string text = ReadFileText(path);
  if (text.empty()) return Status::NotFound("cannot read " + path);
  return ParseJson(text);
}

}  // namespace

int RunFhirPath(const FhirPathOptions& options) {
  if (!options.batch) {
    auto input = LoadInput(options.input);
    if (!input.ok()) {
      std::fprintf(stderr, "fhirpath: %s\n", input.status().message().c_str());
      return 2;
    }
    auto out = Run(options.expression, *input, options.typed, false);
    if (!out.ok()) {
      std::fprintf(stderr, "fhirpath: %s\n", out.status().message().c_str());
      return 2;
    }
    std::printf("%s\n", out->c_str());
    return 0;
  }
  std::map<std::string, json::value> inputs;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string out;
    auto error = [](const std::string& message) {
      return json::serialize(json::object{{"error", message}});
    };
    auto request = ParseJson(line);
    if (!request.ok() || !request->is_object()) {
      out = error("each line must be a JSON object");
    } else {
      const json::object& r = request->get_object();
      std::string file(GetString(r, "input"));
      auto it = inputs.find(file);
      if (it == inputs.end()) {
        auto loaded = LoadInput(file);
        it = inputs.emplace(file, loaded.ok() ? std::move(loaded).value() : json::value()).first;
      }
      if (it->second.is_null()) {
        out = error("cannot read input " + file);
      } else {
        auto result = Run(std::string(GetString(r, "expression")), it->second, options.typed,
                          GetString(r, "mode") == "strict",
                          r.contains("checkOrderedFunctions") &&
                              r.at("checkOrderedFunctions") == json::value(true));
        out = result.ok() ? std::move(result).value() : error(result.status().message());
      }
    }
    std::printf("%s\n", out.c_str());
  }
  return 0;
}

}  // namespace taproot::app
