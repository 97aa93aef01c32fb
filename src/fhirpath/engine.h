// The FHIRPath engine: compile once, evaluate many times, from many threads.
//
//   auto expr = fhirpath::Compile("Patient.name.where(use = 'official').given");
//   auto result = expr->Evaluate(resource_json);   // a Collection of items
//
// Evaluation reads the resource's Boost.JSON DOM in place (the representation the server parses
// and stores), guided by the R4 model for element types and value[x] choices.
// Thread-safety: a CompiledExpression is immutable; Evaluate may run concurrently.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "fhir/terminology.h"
#include "fhirpath/ast.h"
#include "fhirpath/value.h"

namespace taproot::fhirpath {

struct EvalOptions {
  // Strict semantic checks (the suite's mode="strict"): naming an element the type does not
  // have, a choice element by its typed name (valueQuantity), or a resource type that is not the
  // context's, is an error instead of an empty result.
  bool strict = false;
  // Also refuse order-dependent functions (first, last, tail, skip, take, [n]) on
  // collections whose order is undefined (children(), descendants() and paths from them): the
  // suite's checkOrderedFunctions.
  bool check_ordered_functions = false;
  // `x as T` and `as(T)` on several items keep those of type T, as ofType() does, instead of
  // failing (FHIRPath wants one item). R4's search parameter expressions depend on it:
  // `Observation.component.value as Quantity` over a blood pressure's two components.
  bool as_filters = false;
  // Extra environment variables (%name), beyond %resource, %rootResource, %context, %ucum, %sct,
  // %loinc.
  std::map<std::string, Collection> variables;
  // resolve() for references that are neither contained ("#id") nor entries of the Bundle being
  // evaluated: the server fills this in to read "Patient/123" (or an absolute URL on its own
  // base) from its store. The returned resource must stay valid until Evaluate returns (the
  // hook owns it, typically in a cache that lives as long as the evaluation); null if unknown.
  std::function<const boost::json::value*(const std::string& reference)> resolve;
  // memberOf(), subsumes() and subsumedBy(): the value sets and code systems known to the
  // caller. Null means the R4 specification's own (fhir::R4Terminology()).
  const fhir::Terminology* terminology = nullptr;
};

class CompiledExpression {
 public:
  explicit CompiledExpression(std::unique_ptr<Expr> root);
  // Evaluates against a resource (or any FHIR JSON object with resourceType).
  Result<Collection> Evaluate(const boost::json::value& resource,
                              const EvalOptions& options = {}) const;
  // Evaluates relative to an item of an earlier result (a composite search parameter's
  // components on each value it selected); `resource` is the item's resource (%resource).
  Result<Collection> Evaluate(const Item& context, const Item& resource,
                              const EvalOptions& options = {}) const;
  const Expr& root() const { return *root_; }

 private:
  std::unique_ptr<Expr> root_;
  std::vector<Collection> literals_;  // values of the literals, computed once (Expr::literal_slot)
};

Result<std::shared_ptr<const CompiledExpression>> Compile(std::string_view text);

// Renders an item as the official test suite writes outputs: "@1974-12-25" for dates,
// "5 'mg'" for quantities, the plain text for strings and numbers. Nodes of complex type
// render as their JSON.
std::string ItemToString(const Item& item);

}  // namespace taproot::fhirpath
