#include "fhir/model.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdlib>

#include "common/compress.h"
#include "common/embedded.h"
#include "common/json.h"
#include "common/log.h"

namespace taproot::fhir {
namespace {

constexpr std::string_view kFhirTypeExt =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
constexpr std::string_view kSystemPrefix = "http://hl7.org/fhirpath/System.";

std::string Capitalize(std::string_view s) {
  std::string out(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// The FHIR type code of an ElementDefinition.type entry; System.* codes map to their FHIR type
// via the fhir-type extension (R4 uses these for Element.id and primitive values).
std::string TypeCode(const json::object& type) {
  std::string code(GetString(type, "code"));
  if (code.rfind(kSystemPrefix, 0) != 0) return code;
  if (auto* ext = type.if_contains("extension"); ext && ext->is_array()) {
    for (const auto& e : ext->get_array()) {
      if (e.is_object() && GetString(e.get_object(), "url") == kFhirTypeExt) {
        return std::string(GetString(e.get_object(), "valueUrl"));
      }
    }
  }
  return "string";
}

struct PendingElement {
  TypeDef* owner;
  size_t index;
  std::vector<std::string> type_codes;
  std::string content_reference;  // "#Questionnaire.item"
  std::string backbone_path;      // non-empty when the element has inline children
};

}  // namespace

Result<Model> Model::Build(std::string_view types_json, std::string_view resources_json) {
  Model m;
  std::vector<json::value> docs;
  for (std::string_view text : {types_json, resources_json}) {
    ASSIGN_OR_RETURN(json::value doc, ParseJson(text));
    docs.push_back(std::move(doc));
  }
  StringMap<TypeDef*> by_path;  // backbone element paths and type roots
  std::vector<PendingElement> pending;

  for (const json::value& doc : docs) {
    const json::array* entries =
        doc.as_object().if_contains("entry") ? &doc.as_object().at("entry").as_array() : nullptr;
    if (!entries) continue;
    for (const json::value& entry : *entries) {
      const json::object& sd = entry.as_object().at("resource").as_object();
      if (GetString(sd, "resourceType") != "StructureDefinition") continue;
      if (GetString(sd, "derivation") == "constraint") continue;  // profiles are not base types
      std::string_view kind = GetString(sd, "kind");
      if (kind == "logical") continue;
      auto type = std::make_unique<TypeDef>();
      type->name = std::string(GetString(sd, "id"));
      type->kind = kind == "primitive-type" ? TypeDef::Kind::kPrimitive
                   : kind == "resource"     ? TypeDef::Kind::kResource
                                            : TypeDef::Kind::kComplex;
      auto* abs = sd.if_contains("abstract");
      type->abstract = abs && abs->is_bool() && abs->get_bool();
      TypeDef* root = type.get();
      m.types_[type->name] = root;
      by_path[type->name] = root;
      m.owned_.push_back(std::move(type));
      if (root->kind == TypeDef::Kind::kResource && !root->abstract) {
        m.resource_types_.push_back(root->name);
      }

      const json::array& elems = sd.at("snapshot").at("element").as_array();
      for (size_t i = 1; i < elems.size(); ++i) {
        const json::object& el = elems[i].as_object();
        std::string path(GetString(el, "path"));
        size_t dot = path.rfind('.');
        std::string parent_path = path.substr(0, dot);
        std::string name = path.substr(dot + 1);
        auto owner_it = by_path.find(parent_path);
        if (owner_it == by_path.end()) {
          return Status::Internal("definitions: no parent for " + path);
        }
        // Primitive types describe their JSON value as "x.value"; it is not a JSON property.
        if (root->kind == TypeDef::Kind::kPrimitive && name == "value") continue;
        TypeDef* owner = owner_it->second;
        ElementDef def;
        def.path = path;
        def.choice = name.size() > 3 && name.compare(name.size() - 3, 3, "[x]") == 0;
        def.name = def.choice ? name.substr(0, name.size() - 3) : name;
        def.min = static_cast<int>(el.at("min").to_number<int64_t>());
        std::string_view max = GetString(el, "max");
        def.prohibited = max == "0";
        def.is_array = max != "1" && max != "0";
        if (const json::value* summary = el.if_contains("isSummary");
            summary && summary->is_bool()) {
          def.summary = summary->get_bool();
        }
        PendingElement p{owner, owner->elements.size(), {}, {}, {}};
        if (auto* types = el.if_contains("type"); types && types->is_array()) {
          for (const auto& t : types->get_array()) p.type_codes.push_back(TypeCode(t.as_object()));
        }
        p.content_reference = std::string(GetString(el, "contentReference"));
        bool has_children = i + 1 < elems.size() &&
                            GetString(elems[i + 1].as_object(), "path").rfind(path + ".", 0) == 0;
        if (has_children) {
          auto bb = std::make_unique<TypeDef>();
          bb->name = path;
          bb->kind = TypeDef::Kind::kBackbone;
          by_path[path] = bb.get();
          m.owned_.push_back(std::move(bb));
          p.backbone_path = path;
        }
        owner->elements.push_back(std::move(def));
        pending.push_back(std::move(p));
      }
    }
  }

  // Resolve element types now that every type exists, then index JSON property names.
  for (PendingElement& p : pending) {
    ElementDef& def = p.owner->elements[p.index];
    if (!p.backbone_path.empty()) {
      def.types.push_back(by_path.at(p.backbone_path));
    } else if (!p.content_reference.empty()) {
      auto it = by_path.find(p.content_reference.substr(1));
      if (it == by_path.end()) return Status::Internal("definitions: bad " + p.content_reference);
      def.types.push_back(it->second);
    } else {
      for (const std::string& code : p.type_codes) {
        const TypeDef* t = m.FindType(code);
        if (!t) return Status::Internal("definitions: unknown type " + code + " at " + def.path);
        def.types.push_back(t);
      }
    }
    if (def.types.empty()) return Status::Internal("definitions: untyped element " + def.path);
  }
  for (auto& owned : m.owned_) {
    TypeDef* t = owned.get();
    for (const ElementDef& def : t->elements) {
      if (def.choice) {
        for (const TypeDef* type : def.types) {
          t->properties[def.name + Capitalize(type->name)] = {&def, type};
        }
      } else {
        t->properties[def.name] = {&def, def.types.front()};
      }
    }
  }
  std::sort(m.resource_types_.begin(), m.resource_types_.end());
  for (auto& owned : m.owned_) {
    owned->property_index.Build(owned->properties);
    for (const ElementDef& el : owned->elements) {
      if (el.choice) owned->choices.push_back(&el);
    }
  }
  m.type_index_.Build(m.types_);
  return m;
}

const TypeDef* Model::FindType(std::string_view name) const {
  if (type_index_.built()) {
    TypeDef* const* t = type_index_.Find(name);
    return t ? *t : nullptr;
  }
  auto it = types_.find(name);  // while Build() is still filling the model
  return it == types_.end() ? nullptr : it->second;
}

const TypeDef* Model::FindResource(std::string_view name) const {
  const TypeDef* t = FindType(name);
  return t && t->kind == TypeDef::Kind::kResource && !t->abstract ? t : nullptr;
}

const Model& R4() {
  static const Model* model = [] {
    auto types = ZstdDecompress(EmbeddedFile("r4/profiles-types.json.zst"));
    auto resources = ZstdDecompress(EmbeddedFile("r4/profiles-resources.json.zst"));
    if (!types.ok() || !resources.ok()) {
      LogError("embedded R4 definitions are unreadable");
      std::abort();
    }
    auto built = Model::Build(*types, *resources);
    if (!built.ok()) {
      LogError("embedded R4 definitions are invalid: " + built.status().ToString());
      std::abort();
    }
    return new Model(std::move(built).value());
  }();
  return *model;
}

}  // namespace taproot::fhir
