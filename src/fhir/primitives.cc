#include "fhir/primitives.h"

#include <boost/json.hpp>
#include <cstdint>

#include "common/clock.h"

namespace taproot::fhir {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool ReadDigits(std::string_view s, size_t& pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!IsDigit(s[pos + i])) return false;
    v = v * 10 + (s[pos + i] - '0');
  }
  pos += n;
  *out = v;
  return true;
}

// Parses YYYY[-MM[-DD]] at pos; returns the number of components read (0 on error).
int ParseDatePart(std::string_view s, size_t& pos) {
  int y = 0, m = 0, d = 0;
  if (!ReadDigits(s, pos, 4, &y)) return 0;
  if (pos == s.size() || s[pos] != '-') return 1;
  ++pos;
  if (!ReadDigits(s, pos, 2, &m) || m < 1 || m > 12) return 0;
  if (pos == s.size() || s[pos] != '-') return 2;
  ++pos;
  if (!ReadDigits(s, pos, 2, &d) || d < 1 || d > DaysInMonth(y, m)) return 0;
  return 3;
}

// hh:mm:ss(.f+)? ; seconds required.
bool ParseTimePart(std::string_view s, size_t& pos) {
  int h = 0, mi = 0, se = 0;
  if (!ReadDigits(s, pos, 2, &h) || h > 23) return false;
  if (pos >= s.size() || s[pos++] != ':') return false;
  if (!ReadDigits(s, pos, 2, &mi) || mi > 59) return false;
  if (pos >= s.size() || s[pos++] != ':') return false;
  if (!ReadDigits(s, pos, 2, &se) || se > 60) return false;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && IsDigit(s[pos])) ++pos;
    if (pos == start) return false;
  }
  return true;
}

bool ParseZone(std::string_view s, size_t& pos) {
  if (pos >= s.size()) return false;
  if (s[pos] == 'Z') {
    ++pos;
    return true;
  }
  if (s[pos] != '+' && s[pos] != '-') return false;
  ++pos;
  int h = 0, m = 0;
  if (!ReadDigits(s, pos, 2, &h) || h > 14) return false;
  if (pos >= s.size() || s[pos++] != ':') return false;
  return ReadDigits(s, pos, 2, &m) && m <= 59;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool IsValidCode(std::string_view s) {
  // [^\s]+(\s[^\s]+)*
  if (s.empty() || IsSpace(s.front()) || IsSpace(s.back())) return false;
  for (size_t i = 1; i < s.size(); ++i) {
    if (IsSpace(s[i]) && IsSpace(s[i - 1])) return false;
  }
  return true;
}

bool NoWhitespace(std::string_view s) {
  for (char c : s)
    if (IsSpace(c)) return false;
  return true;
}

bool IsBase64(std::string_view s) {
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=' ||
          IsSpace(c)))
      return false;
  }
  return true;
}

bool IsOid(std::string_view s) {
  // urn:oid:[0-2](\.(0|[1-9][0-9]*))+
  if (s.rfind("urn:oid:", 0) != 0) return false;
  size_t p = 8;
  if (p >= s.size() || s[p] < '0' || s[p] > '2') return false;
  ++p;
  int arcs = 0;
  while (p < s.size()) {
    if (s[p++] != '.') return false;
    if (p >= s.size() || !IsDigit(s[p])) return false;
    if (s[p] == '0' && p + 1 < s.size() && IsDigit(s[p + 1])) return false;
    while (p < s.size() && IsDigit(s[p])) ++p;
    ++arcs;
  }
  return arcs > 0;
}

bool IsUuidUrn(std::string_view s) {
  if (s.rfind("urn:uuid:", 0) != 0 || s.size() != 45) return false;
  for (size_t i = 9; i < s.size(); ++i) {
    size_t k = i - 9;
    if (k == 8 || k == 13 || k == 18 || k == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

std::string Quote(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 80));
  if (s.size() > 80) out += "...";
  return out + "'";
}

}  // namespace

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return true;
}

bool IsValidDate(std::string_view s) {
  size_t pos = 0;
  return ParseDatePart(s, pos) > 0 && pos == s.size();
}

bool IsValidDateTime(std::string_view s) {
  size_t pos = 0;
  int parts = ParseDatePart(s, pos);
  if (parts == 0) return false;
  if (pos == s.size()) return true;
  if (parts != 3 || s[pos++] != 'T') return false;
  return ParseTimePart(s, pos) && ParseZone(s, pos) && pos == s.size();
}

bool IsValidInstant(std::string_view s) {
  size_t pos = 0;
  if (ParseDatePart(s, pos) != 3 || pos >= s.size() || s[pos++] != 'T') return false;
  return ParseTimePart(s, pos) && ParseZone(s, pos) && pos == s.size();
}

bool IsValidTime(std::string_view s) {
  size_t pos = 0;
  return ParseTimePart(s, pos) && pos == s.size();
}

std::string CheckPrimitive(std::string_view type, const boost::json::value& v) {
  if (type == "boolean") {
    return v.is_bool() ? "" : "a boolean must be JSON true or false";
  }
  if (type == "integer" || type == "unsignedInt" || type == "positiveInt") {
    int64_t n = 0;
    if (v.is_int64()) {
      n = v.get_int64();
    } else if (v.is_uint64()) {
      return "integer out of range (32-bit signed)";
    } else {
      return "an " + std::string(type) + " must be a JSON number without a fraction";
    }
    if (n < INT32_MIN || n > INT32_MAX) return "integer out of range (32-bit signed)";
    if (type == "unsignedInt" && n < 0) return "an unsignedInt must not be negative";
    if (type == "positiveInt" && n < 1) return "a positiveInt must be 1 or more";
    return "";
  }
  if (type == "decimal") {
    return v.is_number() ? "" : "a decimal must be a JSON number";
  }
  if (!v.is_string()) {
    return "a " + std::string(type) + " must be a JSON string";
  }
  const boost::json::string& js = v.get_string();
  std::string_view s(js.data(), js.size());
  if (s.empty()) return "an empty string is not allowed; omit the element instead";
  if (type == "string" || type == "markdown") {
    return "";
  }
  if (type == "code") return IsValidCode(s) ? "" : Quote(s) + " is not a valid code";
  if (type == "id") return IsValidId(s) ? "" : Quote(s) + " is not a valid id";
  if (type == "date") {
    return IsValidDate(s) ? "" : Quote(s) + " is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)";
  }
  if (type == "dateTime") {
    return IsValidDateTime(s) ? ""
                              : Quote(s) +
                                    " is not a valid dateTime (a date, or a date and time with "
                                    "seconds and a zone: 2024-01-31T10:00:00Z)";
  }
  if (type == "instant") {
    return IsValidInstant(s) ? "" : Quote(s) + " is not a valid instant (2024-01-31T10:00:00.000Z)";
  }
  if (type == "time") return IsValidTime(s) ? "" : Quote(s) + " is not a valid time (hh:mm:ss)";
  if (type == "uri" || type == "url" || type == "canonical") {
    return NoWhitespace(s) ? "" : Quote(s) + " is not a valid " + std::string(type);
  }
  if (type == "oid") return IsOid(s) ? "" : Quote(s) + " is not a valid oid (urn:oid:1.2.3)";
  if (type == "uuid") return IsUuidUrn(s) ? "" : Quote(s) + " is not a valid uuid (urn:uuid:...)";
  if (type == "base64Binary") return IsBase64(s) ? "" : "not valid base64";
  if (type == "xhtml") return "";
  return "";
}

}  // namespace taproot::fhir
