// The FHIR R4 resource model: every resource type, data type and element, built from the official
// R4 StructureDefinitions (vendored, compressed, compiled into the binary).
//
// The model is immutable once built. R4() builds it on first use (about a third of a second) and
// returns the same instance for the life of the process; it is safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/strings.h"

namespace taproot::fhir {

struct TypeDef;

// Transparent hashing so lookups by string_view do not allocate.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// A read-only index over a StringMap for the lookups on FHIRPath's and the indexer's hot path
// (a type by name, a property by JSON name): open addressing with FNV-1a over short keys,
// verified by a full compare. About four times faster than the unordered_map it mirrors. Keys
// and values are the map's own, so the map must outlive the index and not change after Build.
template <typename V>
class FastIndex {
 public:
  void Build(const StringMap<V>& map) {
    size_t n = 8;
    while (n < map.size() * 3) n *= 2;
    slots_.assign(n, {std::string_view(), nullptr});
    mask_ = n - 1;
    for (const auto& [key, value] : map) {
      size_t h = Hash(key);
      while (slots_[h & mask_].second) ++h;
      slots_[h & mask_] = {std::string_view(key), &value};
    }
  }
  bool built() const { return !slots_.empty(); }
  const V* Find(std::string_view key) const { return Find(key, Hash(key)); }
  // With the key's Hash computed beforehand (a compiled FHIRPath step keeps its name's).
  const V* Find(std::string_view key, size_t hash) const {
    for (size_t h = hash;; ++h) {
      const auto& slot = slots_[h & mask_];
      if (!slot.second) return nullptr;
      if (SameText(slot.first, key)) return slot.second;
    }
  }
  static size_t Hash(std::string_view s) {
    uint32_t h = 2166136261u;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return h;
  }

 private:
  std::vector<std::pair<std::string_view, const V*>> slots_;
  size_t mask_ = 0;
};

struct ElementDef {
  std::string name;  // JSON property name; for choice elements the stem ("value" of value[x])
  std::string path;  // "Patient.contact.name"
  bool choice = false;
  bool is_array = false;    // max > 1 or "*"
  bool prohibited = false;  // max == "0"
  bool summary = false;     // isSummary: part of _summary=true
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
  FastIndex<Property> property_index;  // filled once the model is built
  // The choice elements (value[x]...), filled once the model is built: a step by a choice's
  // stem looks here instead of scanning every element (a resource has dozens, and a few choices).
  std::vector<const ElementDef*> choices;

  const Property* FindProperty(std::string_view json_name) const {
    if (property_index.built()) return property_index.Find(json_name);
    auto it = properties.find(json_name);
    return it == properties.end() ? nullptr : &it->second;
  }
  // The same, given FastIndex<Property>::Hash(json_name).
  const Property* FindProperty(std::string_view json_name, size_t hash) const {
    if (property_index.built()) return property_index.Find(json_name, hash);
    return FindProperty(json_name);
  }
  // The choice element whose stem is `name` ("value" for value[x]), or null.
  const ElementDef* FindChoice(std::string_view name) const {
    for (const ElementDef* el : choices) {
      if (el->name == name) return el;
    }
    return nullptr;
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
  FastIndex<TypeDef*> type_index_;           // filled at the end of Build
};

// The R4 model built from the embedded definitions. Aborts the process if they are corrupt,
// which can only happen with a broken build.
const Model& R4();

}  // namespace taproot::fhir
