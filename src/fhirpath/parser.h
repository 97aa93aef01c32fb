// FHIRPath parser: expression text to an AST, with errors that name the position.
// Pure function; thread-safe.
#pragma once

#include <memory>
#include <string_view>

#include "common/status.h"
#include "fhirpath/ast.h"

namespace taproot::fhirpath {

// Parses a whole expression. A syntax error is kInvalid with "at position N: ..." in the message.
Result<std::unique_ptr<Expr>> Parse(std::string_view text);

// The calendar-duration words a quantity literal may use unquoted (year, months, day, ...).
bool IsCalendarDuration(std::string_view word);

}  // namespace taproot::fhirpath
