// The search parameters the server knows: the 1,375 of the R4 specification (compiled in),
// each with its FHIRPath expression compiled once and split per resource type, so that
// indexing a resource evaluates only the branches that can match it.
//
// The registry is immutable once built; R4Params() builds it on first use and shares it between
// threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fhir/model.h"
#include "fhirpath/engine.h"

namespace taproot::search {

enum class ParamType {
  kString,
  kToken,
  kReference,
  kDate,
  kNumber,
  kQuantity,
  kUri,
  kComposite,
  kSpecial
};

struct ParamDef {
  std::string code;  // "name", "subject", "_profile"
  std::string url;   // canonical URL of the SearchParameter
  ParamType type = ParamType::kToken;
  std::string expression;  // the branches that apply to this resource type
  // Compiled branches; empty for parameters without an expression (_text, _content: handled
  // by the engine itself).
  std::vector<std::shared_ptr<const fhirpath::CompiledExpression>> branches;
  std::vector<std::string> branch_texts;  // the same branches as written
  std::vector<std::string> targets;       // reference parameters: the resource types they point at
  // A reference parameter that can only index references to one type: a single target, or
  // every branch ending in `.where(resolve() is T)` (clinical-patient lists Patient and Group
  // but indexes Patient only). Empty otherwise.
  std::string only_target;
  // Composite parameters: each component's parameter (resolved for this type) and expression.
  struct Component {
    const ParamDef* param = nullptr;
    std::shared_ptr<const fhirpath::CompiledExpression> expression;
    std::string text;  // the expression as written
  };
  std::vector<Component> components;
  std::vector<std::string> composite_of;  // component definition URLs, resolved after loading
  // Set when the parameter's branches are exactly those of these parameters together
  // (Observation: combo-code = code | component-code): it has no index rows of its own, and
  // searches and sorts read theirs. Never a reference parameter (chains and includes name it).
  std::vector<const ParamDef*> union_of;
};

class ParamRegistry {
 public:
  // Builds from a Bundle of SearchParameter resources (the R4 search-parameters.json).
  static Result<std::unique_ptr<ParamRegistry>> Build(const fhir::Model& model,
                                                      std::string_view bundle_json);

  // The parameter `code` of resource type `type` (including the Resource-wide ones: _id,
  // _lastUpdated, _profile, _tag, _security, _source), or null.
  const ParamDef* Find(std::string_view type, std::string_view code) const;
  // Every parameter of `type`, in code order.
  const std::vector<const ParamDef*>& ForType(std::string_view type) const;

 private:
  std::vector<std::unique_ptr<ParamDef>> owned_;
  std::unordered_map<std::string, std::vector<const ParamDef*>> by_type_;
  std::unordered_map<std::string, const ParamDef*> by_type_code_;  // "Type|code"
};

const ParamRegistry& R4Params();

// The branches of a FHIRPath union (a | b | c) at the top level, as text.
std::vector<std::string> SplitUnion(std::string_view expression);

}  // namespace taproot::search
