// UCUM (Unified Code for Units of Measure, https://ucum.org/ucum) for comparing and converting
// quantities: FHIRPath's Quantity equality, ordering and arithmetic, toQuantity(unit), and
// search's quantity normalisation. Parses unit expressions with the full UCUM syntax (products
// `.`, quotients `/`, integer exponents, parentheses, annotations `{...}`, factors like `10*3`)
// over the metric prefixes and the atoms clinical data uses: SI base and derived units, time
// (min h d wk mo a), volume (L), pressure (mm[Hg], cm[H2O], bar, atm), amount (mol, eq, osm),
// percent and parts per, the customary units (inches, feet, pounds, ounces, US fluid volumes),
// temperature (K, Cel, [degF], with their offsets) and arbitrary units ([iU], [IU], [arb'U] ...),
// which compare only with themselves. Unknown atoms are errors, never guesses.
//
// Pure functions over immutable tables; thread-safe.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace taproot::fhir::ucum {

// A unit reduced to UCUM's base units (m, s, g, rad, K, C, cd): value_in_base = value * factor
// (+ offset, for Cel and [degF] alone).
struct Canonical {
  double factor = 1;
  double offset = 0;                     // non-zero only for the special temperature units
  std::array<int, 7> dims{};             // exponents of m, s, g, rad, K, C, cd
  std::map<std::string, int> arbitrary;  // arbitrary units by name, with their exponents

  bool SameDimension(const Canonical& o) const {
    return dims == o.dims && arbitrary == o.arbitrary;
  }
  // The canonical unit text ("g.m-3", "1" for dimensionless), for index keys.
  std::string UnitText() const;
};

Result<Canonical> Parse(std::string_view unit);

// `value` in unit `from` expressed in unit `to`; nullopt if either does not parse or they
// measure different things.
std::optional<double> Convert(double value, std::string_view from, std::string_view to);

}  // namespace taproot::fhir::ucum
