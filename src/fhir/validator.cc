#include "fhir/validator.h"

#include <boost/json.hpp>

#include "common/json.h"
#include "fhir/primitives.h"

namespace taproot::fhir {
namespace {

class Validator {
 public:
  Validator(const Model& model, const ValidateOptions& options)
      : model_(model), options_(options) {}

  void Resource(const json::value& v, const std::string& path, bool root) {
    if (!v.is_object()) {
      Add("structure", "a resource must be a JSON object", path);
      return;
    }
    const json::object& obj = v.get_object();
    auto* rt = obj.if_contains("resourceType");
    if (!rt || !rt->is_string()) {
      Add("structure", "the resource has no resourceType", path);
      return;
    }
    std::string_view type_name(rt->get_string());
    const TypeDef* type = model_.FindResource(type_name);
    if (!type) {
      Add("not-supported",
          "'" + std::string(type_name.substr(0, 64)) + "' is not an R4 resource type", path);
      return;
    }
    std::string here = root ? std::string(type_name) : path;
    if (auto* id = obj.if_contains("id")) {
      if (!id->is_string() || !IsValidId(std::string_view(id->get_string()))) {
        Add("value", "the id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'", here + ".id");
      }
    }
    Object(obj, *type, here, /*is_resource=*/true);
  }

  Status Result() {
    if (issues_.empty()) return Status::Ok();
    return Status::WithIssues(StatusCode::kInvalid, std::move(issues_));
  }

 private:
  void Add(const char* code, std::string msg, std::string path) {
    if (issues_.size() >= options_.max_issues) return;
    Issue i;
    i.code = code;
    i.diagnostics = std::move(msg);
    i.expression = std::move(path);
    issues_.push_back(std::move(i));
  }

  void Object(const json::object& obj, const TypeDef& type, const std::string& path,
              bool is_resource) {
    if (obj.empty()) {
      Add("structure", "an empty object is not allowed; omit the element instead", path);
      return;
    }
    for (const auto& kv : obj) {
      std::string_view key = kv.key();
      if (is_resource && key == "resourceType") continue;
      std::string child = path + "." + std::string(key);
      if (!key.empty() && key[0] == '_') {
        PrimitiveExtension(type, key.substr(1), kv.value(), obj, child);
        continue;
      }
      const TypeDef::Property* prop = type.FindProperty(key);
      if (!prop) {
        Add("structure",
            "unknown element '" + std::string(key.substr(0, 64)) + "' for type " + type.name,
            child);
        continue;
      }
      const ElementDef& el = *prop->element;
      if (el.prohibited) {
        Add("structure", "element '" + std::string(key) + "' is not allowed here", child);
        continue;
      }
      const json::value& v = kv.value();
      if (el.is_array) {
        if (!v.is_array()) {
          Add("structure", "element '" + std::string(key) + "' must be a JSON array", child);
          continue;
        }
        const json::array& arr = v.get_array();
        if (arr.empty()) {
          Add("structure", "an empty array is not allowed; omit the element instead", child);
        }
        for (size_t i = 0; i < arr.size(); ++i) {
          std::string item_path = child + "[" + std::to_string(i) + "]";
          if (arr[i].is_null()) {
            // null is only a placeholder for a value that has a `_key` extension.
            if (!prop->type->IsPrimitive() || !HasUnderscoreAt(obj, key, i)) {
              Add("structure", "null is not allowed here", item_path);
            }
            continue;
          }
          Value(arr[i], *prop->type, item_path);
        }
      } else {
        if (v.is_array()) {
          Add("structure", "element '" + std::string(key) + "' holds a single value, not an array",
              child);
          continue;
        }
        Value(v, *prop->type, child);
      }
    }
    // Required elements (min >= 1).
    for (const ElementDef& el : type.elements) {
      if (el.min < 1 || !options_.check_required) continue;
      if (!Present(obj, el)) {
        Add("required", "missing required element '" + el.name + (el.choice ? "[x]" : "") + "'",
            path + "." + el.name);
      }
    }
  }

  static bool HasUnderscoreAt(const json::object& obj, std::string_view key, size_t i) {
    std::string ukey = "_" + std::string(key);
    auto* u = obj.if_contains(ukey);
    return u && u->is_array() && i < u->get_array().size() && u->get_array()[i].is_object();
  }

  static bool Present(const json::object& obj, const ElementDef& el) {
    if (!el.choice) return obj.contains(el.name) || obj.contains("_" + el.name);
    for (const auto& kv : obj) {
      std::string_view k = kv.key();
      if (!k.empty() && k[0] == '_') k.remove_prefix(1);
      if (k.size() > el.name.size() && k.substr(0, el.name.size()) == el.name) return true;
    }
    return false;
  }

  void PrimitiveExtension(const TypeDef& type, std::string_view key, const json::value& v,
                          const json::object& obj, const std::string& path) {
    const TypeDef::Property* prop = type.FindProperty(key);
    if (!prop || !prop->type->IsPrimitive()) {
      Add("structure",
          "'_" + std::string(key.substr(0, 64)) + "' does not extend a primitive element", path);
      return;
    }
    auto element_object = [&](const json::value& item, const std::string& p) {
      if (!item.is_object()) {
        Add("structure", "a primitive extension must be a JSON object", p);
        return;
      }
      Object(item.get_object(), *prop->type, p, false);
    };
    if (prop->element->is_array) {
      if (!v.is_array()) {
        Add("structure", "'_" + std::string(key) + "' must be a JSON array", path);
        return;
      }
      const json::array& arr = v.get_array();
      auto* values = obj.if_contains(key);
      if (values && (!values->is_array() || values->get_array().size() != arr.size())) {
        Add("structure",
            "'_" + std::string(key) + "' must have as many items as '" + std::string(key) + "'",
            path);
      }
      for (size_t i = 0; i < arr.size(); ++i) {
        if (arr[i].is_null()) continue;
        element_object(arr[i], path + "[" + std::to_string(i) + "]");
      }
    } else {
      element_object(v, path);
    }
  }

  void Value(const json::value& v, const TypeDef& type, const std::string& path) {
    if (type.IsPrimitive()) {
      if (v.is_object() || v.is_array() || v.is_null()) {
        Add("structure", "a " + type.name + " must be a JSON primitive value", path);
        return;
      }
      std::string why = CheckPrimitive(type.name, v);
      if (!why.empty()) Add("value", why, path);
      return;
    }
    if (type.IsAbstractResource()) {
      Resource(v, path, false);
      return;
    }
    if (!v.is_object()) {
      Add("structure", "a " + ShortName(type) + " must be a JSON object", path);
      return;
    }
    Object(v.get_object(), type, path, false);
  }

  static std::string ShortName(const TypeDef& t) {
    return t.kind == TypeDef::Kind::kBackbone ? "BackboneElement" : t.name;
  }

  const Model& model_;
  const ValidateOptions& options_;
  std::vector<Issue> issues_;
};

}  // namespace

Status ValidateResource(const Model& model, const json::value& resource,
                        const ValidateOptions& options) {
  Validator v(model, options);
  v.Resource(resource, "", true);
  return v.Result();
}

}  // namespace taproot::fhir
