// Time for FHIR: instants as microseconds since the Unix epoch (UTC), formatting as FHIR
// `instant`, and parsing of FHIR date/dateTime/instant values used in `_since` and `_at`.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace taproot {

int64_t NowMicros();

// Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms), shared by every module
// that works with dates so that none converts through strings.
struct CivilDate {
  int64_t year;
  int month;  // 1-12
  int day;    // 1-31
};
int64_t DaysFromCivil(int64_t year, int month, int day);  // days since 1970-01-01
CivilDate CivilFromDays(int64_t days);
int DaysInMonth(int64_t year, int month);
// "2026-11-23T07:18:51.123456Z" (microsecond precision keeps versions ordered in time).
std::string FormatInstant(int64_t micros);
// RFC 7231 IMF-fixdate for Last-Modified: "Mon, 23 Nov 2026 07:18:51 GMT".
std::string FormatHttpDate(int64_t micros);
// Parses YYYY, YYYY-MM, YYYY-MM-DD, or a full dateTime/instant with zone. The earliest instant of
// the given precision is returned (2020-03 -> 2020-03-01T00:00:00Z).
Result<int64_t> ParseFhirDateTime(std::string_view text);

}  // namespace taproot
