// The FHIRPath abstract syntax tree (http://hl7.org/fhirpath/N1/). Built once by Compile() and
// then immutable, so a compiled expression can be evaluated from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace taproot::fhir {
struct TypeDef;
}

namespace taproot::fhirpath {

struct Expr {
  enum class Kind {
    kLiteral,     // text holds the literal; literal_kind says which
    kEmpty,       // {}
    kIdentifier,  // a member name, or a type name in a type position
    kThis,        // $this
    kIndex,       // $index
    kTotal,       // $total
    kVariable,    // %name (text without the %)
    kMember,      // children[0].text  (text is the member name)
    kFunction,    // children[0] (the focus; may be null) . text ( children[1..] )
    kIndexer,     // children[0][children[1]]
    kUnary,       // text is "+" or "-"; children[0]
    kBinary,      // text is the operator; children[0], children[1]
    kTypeOp,      // text is "is" or "as"; children[0]; type_name
  };
  enum class LiteralKind {
    kBoolean,
    kString,
    kInteger,
    kDecimal,
    kDate,
    kDateTime,
    kTime,
    kQuantity
  };

  Kind kind;
  LiteralKind literal_kind = LiteralKind::kString;
  std::string text;
  std::string unit;       // for quantity literals
  std::string type_name;  // for is/as: "FHIR.Patient", "System.String" or "Patient"
  int position = 0;       // offset in the expression, for error messages
  int depth = 1;          // height of this subtree (bounded by the parser, so evaluation's
                          // recursion is bounded too)
  std::vector<std::unique_ptr<Expr>> children;

  // Filled in by Compile(), after parsing, for speed:
  // - on a path step (a member, or ofType(T) with a known type) whose focus is another step, the
  //   whole run of steps (first step first) and the expression it starts from, so evaluation
  //   walks each item through all the steps without building the collections in between;
  std::vector<const Expr*> steps;
  const Expr* steps_base = nullptr;
  // - on a literal, its index in the compiled expression's table of values;
  int literal_slot = -1;
  // - on ofType(T), T without its namespace ("Patient" for FHIR.Patient), and whether it names
  //   an abstract FHIR type (Resource, DomainResource).
  std::string bare_type;
  bool abstract_type = false;
  const fhir::TypeDef* bare_type_def = nullptr;  // the FHIR type it names, if any
  // - on a member step or an identifier, its name's hash in the model's property index
  // (FastIndex::Hash).
  size_t name_hash = 0;
};

}  // namespace taproot::fhirpath
