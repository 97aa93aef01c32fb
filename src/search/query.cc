#include "search/query.h"

#include <charconv>

#include "common/clock.h"
#include "search/indexer.h"

namespace taproot::search {
namespace {

// Splits a comma-separated OR list, honouring "\," escapes.
std::vector<std::string> SplitOr(const std::string& v) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      cur.push_back(v[++i]);
    } else if (v[i] == ',') {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(v[i]);
    }
  }
  out.push_back(std::move(cur));
  return out;
}

store::TokenValue ParseToken(const std::string& v) {
  store::TokenValue t;
  size_t bar = std::string::npos;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '|' && (i == 0 || v[i - 1] != '\\')) {
      bar = i;
      break;
    }
  }
  if (bar == std::string::npos) {
    t.code = v;
  } else {
    t.system = v.substr(0, bar);
    t.code = v.substr(bar + 1);
  }
  return t;
}

}  // namespace

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding, lenient about characters that RFC 3986 wants encoded but clients send raw
// ('|' in tokens, ':' in URLs); '+' is a space, as in HTML forms.
Result<std::string> Decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
      int lo = hi >= 0 ? HexValue(s[i + 2]) : -1;
      if (lo < 0) {
        return Status::Invalid("bad percent-encoding in the query string near '" +
                               std::string(s.substr(i, 3)) + "'");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The first instant after the period a date/dateTime value denotes at its precision: 2024 ->
// 2025-01-01, 2024-02 -> 2024-03-01, 2024-02-28 -> 2024-02-29, a full time -> one second later
// (one microsecond when it has a fraction). `start` is the parsed value.
int64_t PrecisionEnd(const std::string& v, int64_t start) {
  constexpr int64_t kSecond = 1000000, kDay = 86400 * kSecond;
  if (v.size() == 4 || v.size() == 7) {
    int year = std::atoi(v.substr(0, 4).c_str());
    int month = v.size() == 7 ? std::atoi(v.substr(5, 2).c_str()) : 12;
    if (month == 12) {
      ++year;
      month = 1;
    } else {
      ++month;
    }
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02d", year, month);
    auto next = ParseFhirDateTime(buf);
    return next.ok() ? *next : start + 366 * kDay;
  }
  if (v.size() == 10) return start + kDay;
  return v.find('.') != std::string::npos ? start + 1 : start + kSecond;
}

}  // namespace

Result<int64_t> ParseNonNegative(const std::string& name, const std::string& v) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < 0) {
    return Status::Invalid("'" + v + "' is not a valid " + name + " (a non-negative integer)",
                           name);
  }
  return n;
}

Result<Params> ParseQueryString(std::string_view query) {
  Params out;
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view part = query.substr(start, amp - start);
    start = amp + 1;
    if (part.empty()) continue;
    size_t eq = part.find('=');
    ASSIGN_OR_RETURN(std::string key, Decode(part.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      ASSIGN_OR_RETURN(value, Decode(part.substr(eq + 1)));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Result<ParsedSearch> ParseSearch(const fhir::Model& model, const std::string& type,
                                 const Params& params, bool strict) {
  ParsedSearch out;
  out.query.type = type;
  out.query.count = kDefaultCount;
  auto unsupported = [&](const std::string& name, const std::string& why) -> Status {
    if (strict) return Status::Invalid("search parameter '" + name + "' " + why, name);
    out.ignored.push_back(name + ": " + why);
    return Status::Ok();
  };
  for (const auto& [name, value] : params) {
    // Formatting and paging parameters are handled by the caller.
    if (name == "_format" || name == "_pretty" || name == "_summary" || name == "_elements") {
      continue;
    }
    if (name == "_count") {
      ASSIGN_OR_RETURN(int64_t n, ParseNonNegative(name, value));
      out.query.count = std::min(n, kMaxCount);
      continue;
    }
    if (name == "_offset") {
      ASSIGN_OR_RETURN(out.query.offset, ParseNonNegative(name, value));
      continue;
    }
    if (name == "_total") {
      out.query.want_total = value != "none";
      continue;
    }
    if (value.empty()) {
      RETURN_IF_ERROR(unsupported(name, "has an empty value"));
      continue;
    }
    if (name == "_id") {
      for (auto& id : SplitOr(value)) out.query.ids.push_back(id);
      out.used.emplace_back(name, value);
      continue;
    }
    if (name == "_lastUpdated") {
      std::string v = value;
      std::string prefix = "eq";
      if (v.size() > 2 && std::isalpha(static_cast<unsigned char>(v[0])) &&
          std::isalpha(static_cast<unsigned char>(v[1]))) {
        prefix = v.substr(0, 2);
        v = v.substr(2);
      }
      auto ts = ParseFhirDateTime(v);
      if (!ts.ok()) return Status::Invalid(ts.status().message(), name);
      // The upper end of the value's precision range, for eq/gt/le.
      int64_t upper = PrecisionEnd(v, *ts);
      auto& ge = out.query.updated_ge;
      auto& lt = out.query.updated_lt;
      auto tighten_ge = [&](int64_t x) { ge = ge ? std::max(*ge, x) : x; };
      auto tighten_lt = [&](int64_t x) { lt = lt ? std::min(*lt, x) : x; };
      if (prefix == "eq") {
        tighten_ge(*ts);
        tighten_lt(upper);
      } else if (prefix == "ge") {
        tighten_ge(*ts);
      } else if (prefix == "gt") {
        tighten_ge(upper);
      } else if (prefix == "lt") {
        tighten_lt(*ts);
      } else if (prefix == "le") {
        tighten_lt(upper);
      } else {
        RETURN_IF_ERROR(unsupported(name, "prefix '" + prefix + "' is not supported yet"));
        continue;
      }
      out.used.emplace_back(name, value);
      continue;
    }
    std::string base = name.substr(0, name.find(':'));
    if (!type.empty() && HasTokenParam(model, type, base)) {
      if (base != name) {
        RETURN_IF_ERROR(unsupported(name, "modifiers are not supported yet"));
        continue;
      }
      store::TokenClause clause;
      clause.param = base;
      for (auto& v : SplitOr(value)) {
        // A uri parameter matches the whole value exactly ('|' belongs to the URL).
        clause.any_of.push_back(base == "url" ? store::TokenValue{std::nullopt, v} : ParseToken(v));
      }
      out.query.clauses.push_back(std::move(clause));
      out.used.emplace_back(name, value);
      continue;
    }
    RETURN_IF_ERROR(unsupported(name, type.empty()
                                          ? "is not supported for whole-system search"
                                          : "is not a supported search parameter for " + type));
  }
  return out;
}

}  // namespace taproot::search
