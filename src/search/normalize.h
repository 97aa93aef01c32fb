// Value normalisation shared by indexing and query parsing, so both sides agree.
//
// Text normalisation for string search: R4 says string parameters match case- and
// accent-insensitively, so both the indexed text and the searched text are folded the same way
// (Unicode decomposition, case folding, combining marks removed, whitespace runs collapsed):
// "Müller" and "MULLER" both become "muller". Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace taproot::search {

std::string NormalizeText(std::string_view text);

// The first and last microsecond (UTC) a date, dateTime or instant covers at its precision:
// "2020" is all of 2020, "2020-03-04T10:00" one minute. Times without a zone are read as UTC.
// nullopt if the text is not a date.
struct TimeRange {
  int64_t start = 0, end = 0;
};
std::optional<TimeRange> DateRange(std::string_view text);

}  // namespace taproot::search
