// The FHIR R4 resource model: every resource type, data type and element, built from the official
// R4 StructureDefinitions (vendored, compressed, compiled into the binary).
//
// The model is immutable once built. R4() builds it on first use (about a third of a second) and
// returns the same instance for the life of the process; it is safe to share between threads.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace taproot::fhir {

struct TypeDef;

// Transparent hashing so lookups by string_view do not allocate.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct ElementDef {
  std::string name;  // JSON property name; for choice elements the stem ("value" of value[x])
  std::string path;  // "Patient.contact.name"
  bool choice = false;
  bool is_array = false;    // max > 1 or "*"
  bool prohibited = false;  // max == "0"
  int min = 0;
  std::vector<const TypeDef*> types;  // one, or several for value[x]
};

struct TypeDef {
  enum class Kind { kPrimitive, kComplex, kResource, kBackbone };
  std::string name;  // "Patient", "HumanName", "boolean"; for backbones the element path
  Kind kind = Kind::kComplex;
  bool abstract = false;
  std::vector<ElementDef> elements;
  // JSON property name -> element index and the concrete type (for "valueQuantity" the
  // value[x] element and Quantity).
  struct Property {
    const ElementDef* element;
    const TypeDef* type;
  };
  StringMap<Property> properties;

  const Property* FindProperty(std::string_view json_name) const {
    auto it = properties.find(json_name);
    return it == properties.end() ? nullptr : &it->second;
  }
  bool IsPrimitive() const { return kind == Kind::kPrimitive; }
  // True if the type's JSON form is a nested resource chosen by resourceType (Resource,
  // DomainResource as element types, e.g. contained or Bundle.entry.resource).
  bool IsAbstractResource() const { return kind == Kind::kResource && abstract; }
};

class Model {
 public:
  // Builds a model from StructureDefinition bundles (JSON text of profiles-types and
  // profiles-resources).
  static Result<Model> Build(std::string_view types_json, std::string_view resources_json);

  Model() = default;
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;

  const TypeDef* FindType(std::string_view name) const;
  // A concrete (non-abstract) resource type, or null.
  const TypeDef* FindResource(std::string_view name) const;
  const std::vector<std::string>& ResourceTypes() const { return resource_types_; }

 private:
  // TypeDefs are heap-allocated so that pointers stay valid as the maps grow.
  std::vector<std::unique_ptr<TypeDef>> owned_;
  StringMap<TypeDef*> types_;
  std::vector<std::string> resource_types_;  // concrete, sorted
};

// The R4 model built from the embedded definitions. Aborts the process if they are corrupt,
// which can only happen with a broken build.
const Model& R4();

}  // namespace taproot::fhir
