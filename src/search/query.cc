#include "search/query.h"

#include <re2/re2.h>

#include <charconv>
#include <cmath>

#include "common/clock.h"
#include "fhir/ucum.h"
#include "search/compartments.h"
#include "search/indexer.h"
#include "search/normalize.h"
#include "search/params.h"

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

// "system|code", "|code" (no system), "code" (any system); '\|' escapes a bar.
std::pair<std::optional<std::string>, std::string> SplitToken(const std::string& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '|' && (i == 0 || v[i - 1] != '\\')) return {v.substr(0, i), v.substr(i + 1)};
  }
  return {std::nullopt, v};
}

// A comparison prefix at the start of an ordered value (R4 search 3.1.1.4).
store::Prefix TakePrefix(std::string& v) {
  static const std::pair<const char*, store::Prefix> kPrefixes[] = {
      {"eq", store::Prefix::kEq}, {"ne", store::Prefix::kNe}, {"gt", store::Prefix::kGt},
      {"lt", store::Prefix::kLt}, {"ge", store::Prefix::kGe}, {"le", store::Prefix::kLe},
      {"sa", store::Prefix::kSa}, {"eb", store::Prefix::kEb}, {"ap", store::Prefix::kAp}};
  if (v.size() > 2 && std::isalpha(static_cast<unsigned char>(v[0]))) {
    for (auto [text, prefix] : kPrefixes) {
      if (v.compare(0, 2, text) == 0) {
        v = v.substr(2);
        return prefix;
      }
    }
  }
  return store::Prefix::kEq;
}

// A decimal's implicit range: "100" stands for [99.5, 100.5], "1.50" for [1.495, 1.505].
std::optional<std::pair<double, double>> NumberRange(const std::string& v) {
  static const RE2 kNumber("[+-]?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?");
  if (!RE2::FullMatch(v, kNumber)) return std::nullopt;
  double d = std::strtod(v.c_str(), nullptr);
  size_t dot = v.find('.');
  size_t exp = v.find_first_of("eE");
  int scale = dot == std::string::npos
                  ? 0
                  : static_cast<int>((exp == std::string::npos ? v.size() : exp) - dot - 1);
  int e = exp == std::string::npos ? 0 : std::atoi(v.c_str() + exp + 1);
  double half = 0.5 * std::pow(10.0, e - scale);
  return std::make_pair(d - half, d + half);
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

// The index table a parameter type's rows live in; none for composite and special ones.
static std::optional<store::IndexKind> IndexKindOf(ParamType type) {
  switch (type) {
    case ParamType::kString:
      return store::IndexKind::kString;
    case ParamType::kToken:
      return store::IndexKind::kToken;
    case ParamType::kReference:
      return store::IndexKind::kReference;
    case ParamType::kDate:
      return store::IndexKind::kDate;
    case ParamType::kNumber:
      return store::IndexKind::kNumber;
    case ParamType::kQuantity:
      return store::IndexKind::kQuantity;
    case ParamType::kUri:
      return store::IndexKind::kUri;
    default:
      return std::nullopt;
  }
}

// Values ORed in one parameter become one SQL branch each; SQLite takes at most 500.
constexpr size_t kMaxOrValues = 100;

static Result<store::IndexClause> ParseClause(const ParamDef& def, const std::string& modifier,
                                              const std::string& value,
                                              const fhir::Terminology& terms) {
  using store::IndexKind;
  using Match = store::IndexPredicate::Match;
  store::IndexClause clause;
  clause.param = def.code;
  std::optional<IndexKind> kind = IndexKindOf(def.type);
  if (!kind) {
    return Status::Make(StatusCode::kNotImplemented, "this parameter type is not supported yet");
  }
  clause.kind = *kind;
  if (modifier == "missing") {
    if (value != "true" && value != "false") return Status::Invalid(":missing takes true or false");
    clause.missing = value == "true";
    return clause;
  }
  if (SplitOr(value).size() > kMaxOrValues) {
    return Status::Invalid("more than " + std::to_string(kMaxOrValues) +
                           " values in one parameter; split the search");
  }
  // Which modifiers each type takes here; the rest are reported, never silently ignored.
  auto no_modifier = [&]() -> Status {
    if (modifier.empty()) return Status::Ok();
    return Status::Make(StatusCode::kNotImplemented,
                        "the modifier ':" + modifier + "' is not supported for this parameter");
  };
  std::optional<std::string> reference_type;
  if (clause.kind == IndexKind::kReference && !modifier.empty() && modifier != "identifier") {
    if (!fhir::R4().FindResource(modifier)) {
      return Status::Make(StatusCode::kNotImplemented,
                          "the modifier ':" + modifier + "' is not supported for this parameter");
    }
    reference_type = modifier;  // subject:Patient=123
  }
  if (clause.kind == IndexKind::kReference && modifier == "identifier") {
    clause.kind = IndexKind::kToken;
    clause.param = def.code + ":identifier";
  }
  for (std::string v : SplitOr(value)) {
    store::IndexPredicate p;
    switch (clause.kind) {
      case IndexKind::kString:
        if (modifier == "exact") {
          p.match = Match::kExact;
          p.value = v;
        } else if (modifier == "contains") {
          p.match = Match::kContains;
          p.value = NormalizeText(v);
        } else {
          RETURN_IF_ERROR(no_modifier());
          p.match = Match::kPrefix;
          p.value = NormalizeText(v);
        }
        break;
      case IndexKind::kToken: {
        if (modifier == "text") {
          p.match = Match::kText;
          p.value = NormalizeText(v);
          break;
        }
        if (modifier == "in" || modifier == "not-in") {
          // The value set's codes, from its expansion or compose.
          auto members = terms.Members(v);
          if (!members.ok()) {
            return Status::Make(members.status().code() == StatusCode::kNotImplemented
                                    ? StatusCode::kNotImplemented
                                    : StatusCode::kInvalid,
                                members.status().message());
          }
          if (members->size() > 10000) {
            return Status::Make(StatusCode::kNotImplemented,
                                "the value set " + v + " has more than 10,000 codes");
          }
          clause.negate = modifier == "not-in";
          p.match = Match::kIn;
          p.codes = std::move(members).value();
          break;
        }
        if (modifier == "below" || modifier == "above") {
          auto [system, code] = SplitToken(v);
          if (!system || system->empty()) {
            return Status::Invalid(":" + modifier + " needs system|code");
          }
          auto codes =
              modifier == "below" ? terms.Below(*system, code) : terms.Above(*system, code);
          if (!codes.ok())
            return Status::Make(StatusCode::kNotImplemented, codes.status().message());
          p.match = Match::kIn;
          for (auto& c : *codes) p.codes.emplace_back(*system, std::move(c));
          break;
        }
        if (modifier == "of-type") {
          // type-system|type-code|value
          size_t b1 = v.find('|');
          size_t b2 = b1 == std::string::npos ? std::string::npos : v.find('|', b1 + 1);
          if (b2 == std::string::npos) {
            return Status::Invalid(":of-type takes type-system|type-code|value");
          }
          clause.param = def.code + ":of-type";
          p.system = v.substr(0, b2);
          p.value = v.substr(b2 + 1);
          break;
        }
        if (modifier == "not") {
          clause.negate = true;
        } else if (!modifier.empty() && modifier != "identifier") {
          RETURN_IF_ERROR(no_modifier());
        }
        auto [system, code] = SplitToken(v);
        if (code.empty() && system) {
          return Status::Make(StatusCode::kNotImplemented,
                              "'system|' (any code of a system) is not supported yet");
        }
        p.system = system;
        p.value = code;
        break;
      }
      case IndexKind::kReference: {
        // Type/id (relative or absolute), a bare id, or a URL that is not Type/id.
        size_t slash = v.rfind('/');
        if (slash != std::string::npos) {
          std::string before = v.substr(0, slash);
          std::string after = v.substr(slash + 1);
          size_t prev = before.rfind('/');
          std::string rtype = prev == std::string::npos ? before : before.substr(prev + 1);
          if (fhir::R4().FindResource(rtype) && !after.empty()) {
            p.system = rtype;
            p.value = after;
          } else {
            p.system = "";
            p.value = v;
          }
        } else {
          p.value = v;
          if (reference_type) p.system = reference_type;
          // A bare id of a parameter with one target type (patient=123) can only mean that
          // type: the search then reads the index down to the seq, like patient=Patient/123.
          if (!p.system && !def.only_target.empty()) p.system = def.only_target;
        }
        break;
      }
      case IndexKind::kDate: {
        RETURN_IF_ERROR(no_modifier());
        p.prefix = TakePrefix(v);
        auto range = DateRange(v);
        if (!range) return Status::Invalid("'" + v + "' is not a date");
        p.start = range->start;
        p.end = range->end;
        if (p.prefix == store::Prefix::kAp) {
          // About: widened by a tenth of the distance from now (R4 suggests 10%).
          int64_t now = NowMicros();
          int64_t d = std::llabs(now - p.start) / 10;
          p.start -= d;
          p.end += d;
        }
        break;
      }
      case IndexKind::kNumber:
      case IndexKind::kQuantity: {
        RETURN_IF_ERROR(no_modifier());
        p.prefix = TakePrefix(v);
        std::string number = v, system, code;
        if (clause.kind == IndexKind::kQuantity) {
          // value|system|code, value||unit, or value alone.
          size_t bar = v.find('|');
          if (bar != std::string::npos) {
            number = v.substr(0, bar);
            std::string rest = v.substr(bar + 1);
            size_t bar2 = rest.find('|');
            system = bar2 == std::string::npos ? "" : rest.substr(0, bar2);
            code = bar2 == std::string::npos ? rest : rest.substr(bar2 + 1);
          }
        }
        auto range = NumberRange(number);
        if (!range) return Status::Invalid("'" + number + "' is not a number");
        double mid = std::strtod(number.c_str(), nullptr);
        p.low = range->first;
        p.high = range->second;
        if (p.prefix != store::Prefix::kEq && p.prefix != store::Prefix::kNe &&
            p.prefix != store::Prefix::kAp) {
          p.low = p.high = mid;  // gt, lt, ge, le, sa, eb compare with the value itself
        }
        if (p.prefix == store::Prefix::kAp) {
          double d = std::fabs(mid) / 10;
          p.low = mid - d;
          p.high = mid + d;
        }
        if (clause.kind == IndexKind::kQuantity && !code.empty()) {
          // UCUM units compare in base units, so 5500 umol/L finds 5.5 mmol/L.
          auto canonical = (system.empty() || system == "http://unitsofmeasure.org")
                               ? fhir::ucum::Parse(code)
                               : Result<fhir::ucum::Canonical>(Status::Invalid("not UCUM"));
          if (canonical.ok() && canonical->offset == 0) {
            p.param_suffix = std::string(kUcumParamSuffix);
            p.system = std::string(kUcumCanonicalSystem);
            p.value = canonical->UnitText();
            p.low *= canonical->factor;
            p.high *= canonical->factor;
          } else {
            if (!system.empty()) p.system = system;
            p.value = code;
          }
        }
        break;
      }
      case IndexKind::kUri:
        if (modifier == "below") {
          p.match = Match::kPrefix;
        } else if (modifier == "above") {
          p.match = Match::kAbove;
        } else {
          RETURN_IF_ERROR(no_modifier());
        }
        p.value = v;
        break;
      case IndexKind::kText:  // IndexKindOf never gives it: _text and _content go to ParseText
        return Status::Internal("full-text parameter " + def.code + " reached ParseClause");
    }
    clause.any_of.push_back(std::move(p));
  }
  return clause;
}

// _text and _content: every word of a value must occur (case and accents ignored); values are
// ORed. Words become quoted full-text terms, so no query syntax passes through.
static Result<store::IndexClause> ParseText(const ParamDef& def, const std::string& modifier,
                                            const std::string& value) {
  if (!modifier.empty() && modifier != "missing") {
    return Status::Make(StatusCode::kNotImplemented,
                        "the modifier ':" + modifier + "' is not supported for " + def.code);
  }
  store::IndexClause clause;
  clause.param = def.code;
  clause.kind = store::IndexKind::kText;
  if (modifier == "missing") {
    if (value != "true" && value != "false") return Status::Invalid(":missing takes true or false");
    clause.missing = value == "true";
    return clause;
  }
  for (const std::string& v : SplitOr(value)) {
    std::string query, word;
    auto flush = [&] {
      if (word.empty()) return;
      query += (query.empty() ? "\"" : " \"") + word + "\"";
      word.clear();
    };
    for (char c : v) {
      // Letters and digits (and any UTF-8 byte) make words; everything else separates them.
      if (std::isalnum(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80) {
        word.push_back(c);
      } else {
        flush();
      }
    }
    flush();
    if (query.empty()) return Status::Invalid("'" + v + "' has no words to search for");
    store::IndexPredicate p;
    p.value = query;
    clause.any_of.push_back(std::move(p));
  }
  return clause;
}

// A composite parameter: "first$second" becomes a clause of the second component's type on
// the rows the indexer filed under the first component's value (search/indexer.cc): a token as
// "<param>$system|code" (or "$code"), a reference as "<param>$Type/id" (or "$id"). Values are
// ORed like any other parameter's: the clause's param is "<param>$" and each value carries the
// rest of its row name.
static Result<store::IndexClause> ParseComposite(const ParamDef& def, const std::string& modifier,
                                                 const std::string& value,
                                                 const fhir::Terminology& terms) {
  if (def.components.size() != 2 || !def.components[0].param || !def.components[1].param ||
      (def.components[0].param->type != ParamType::kToken &&
       def.components[0].param->type != ParamType::kReference)) {
    return Status::Make(StatusCode::kNotImplemented,
                        "this composite parameter is not supported yet");
  }
  if (!modifier.empty()) {
    return Status::Make(StatusCode::kNotImplemented, "composite parameters take no modifier");
  }
  const bool by_reference = def.components[0].param->type == ParamType::kReference;
  store::IndexClause out;
  out.param = def.code + "$";
  for (const std::string& one : SplitOr(value)) {
    size_t dollar = one.find('$');
    if (dollar == std::string::npos) return Status::Invalid("a composite value is first$second");
    std::string key = one.substr(0, dollar);
    if (by_reference) {
      // An absolute URL on this server is not known here: Type/id or id, as indexed.
      if (key.empty()) return Status::Invalid("the first part of '" + one + "' is empty");
    } else {
      auto [system, code] = SplitToken(key);
      key = system ? *system + "|" + code : code;
    }
    ASSIGN_OR_RETURN(store::IndexClause second,
                     ParseClause(*def.components[1].param, "", one.substr(dollar + 1), terms));
    out.kind = second.kind;
    for (store::IndexPredicate& p : second.any_of) {
      p.param_suffix = key + p.param_suffix;
      out.any_of.push_back(std::move(p));
    }
  }
  if (out.any_of.size() > kMaxOrValues) {
    return Status::Invalid("at most " + std::to_string(kMaxOrValues) + " values are allowed");
  }
  return out;
}

// A parameter name with its chains: `subject:Patient.name` (forward, any depth) and
// `_has:Observation:patient:code` (reverse, nestable). NotFound if the name is not a parameter
// of `type`; NotImplemented for what is known but not supported.
static Result<store::IndexClause> ParseNamed(const fhir::Model& model, const std::string& type,
                                             const std::string& name, const std::string& value,
                                             int depth, const fhir::Terminology& terms) {
  if (depth > 4) return Status::Make(StatusCode::kNotImplemented, "chains deeper than 4 levels");
  auto reference_param = [&](const std::string& t, const std::string& code) -> const ParamDef* {
    const ParamDef* d = R4Params().Find(t, code);
    return d && d->type == ParamType::kReference && !d->branches.empty() ? d : nullptr;
  };
  if (name.rfind("_has:", 0) == 0) {
    // _has:Type:referenceParam:rest
    std::string rest = name.substr(5);
    size_t c1 = rest.find(':');
    size_t c2 = c1 == std::string::npos ? std::string::npos : rest.find(':', c1 + 1);
    if (c2 == std::string::npos) {
      return Status::Invalid("_has takes _has:Type:referenceParameter:parameter");
    }
    std::string has_type = rest.substr(0, c1);
    std::string ref = rest.substr(c1 + 1, c2 - c1 - 1);
    if (!model.FindResource(has_type) || !reference_param(has_type, ref)) {
      return Status::Invalid("'" + has_type + ":" + ref + "' is not a reference parameter");
    }
    store::IndexClause clause;
    clause.param = ref;
    clause.kind = store::IndexKind::kReference;
    clause.has_type = has_type;
    auto inner = ParseNamed(model, has_type, rest.substr(c2 + 1), value, depth + 1, terms);
    if (!inner.ok()) {
      if (inner.status().code() == StatusCode::kNotFound) {
        return Status::Invalid("'" + rest.substr(c2 + 1) + "' is not a parameter of " + has_type);
      }
      return inner.status();
    }
    clause.has = std::make_shared<const store::IndexClause>(std::move(inner).value());
    return clause;
  }
  size_t dot = name.find('.');
  if (dot != std::string::npos) {
    std::string left = name.substr(0, dot), right = name.substr(dot + 1);
    std::string base = left.substr(0, left.find(':'));
    std::string type_modifier = base == left ? "" : left.substr(base.size() + 1);
    const ParamDef* def = reference_param(type, base);
    if (!def) {
      if (!R4Params().Find(type, base)) return Status::NotFound("not a parameter");
      return Status::Invalid("'" + base + "' is not a reference parameter, so it cannot chain");
    }
    std::vector<std::string> targets = def->targets;
    if (!type_modifier.empty()) {
      if (!model.FindResource(type_modifier)) {
        return Status::Invalid("'" + type_modifier + "' is not a resource type");
      }
      targets = {type_modifier};
    }
    std::string next_base = right.substr(0, right.find_first_of(":."));
    store::IndexClause clause;
    clause.param = base;
    clause.kind = store::IndexKind::kReference;
    for (const std::string& t : targets) {
      if (!R4Params().Find(t, next_base) && next_base != "_has") continue;
      ASSIGN_OR_RETURN(store::IndexClause next,
                       ParseNamed(model, t, right, value, depth + 1, terms));
      clause.chain.emplace_back(t, std::make_shared<const store::IndexClause>(std::move(next)));
    }
    if (clause.chain.empty()) {
      return Status::Invalid("'" + next_base + "' is not a parameter of what '" + base +
                             "' refers to");
    }
    return clause;
  }
  std::string base = name.substr(0, name.find(':'));
  std::string modifier = base == name ? "" : name.substr(base.size() + 1);
  const ParamDef* def = R4Params().Find(type, base);
  if (!def) return Status::NotFound("not a parameter");
  if (def->code == "_content" && !ContentIndexing()) {
    return Status::Make(StatusCode::kNotImplemented,
                        "_content is not indexed on this server (taproot serve --index-content)");
  }
  if (def->code == "_text" || def->code == "_content") return ParseText(*def, modifier, value);
  Result<store::IndexClause> clause = Status::Internal("unparsed");
  if (def->type == ParamType::kComposite) {
    clause = ParseComposite(*def, modifier, value, terms);
  } else if (def->type == ParamType::kSpecial || def->branches.empty()) {
    return Status::Make(StatusCode::kNotImplemented, "this parameter is not supported yet");
  } else {
    clause = ParseClause(*def, modifier, value, terms);
  }
  // A union of other parameters reads their rows, under the same suffix (":of-type", "$").
  if (clause.ok() && !def->union_of.empty()) {
    std::string suffix = clause->param.substr(def->code.size());
    for (const ParamDef* part : def->union_of) clause->any_param.push_back(part->code + suffix);
  }
  return clause;
}

Result<ParsedSearch> ParseSearch(const fhir::Model& model, const std::string& type,
                                 const Params& params, bool strict,
                                 const fhir::Terminology* terms) {
  const fhir::Terminology& terminology = terms ? *terms : fhir::R4Terminology();
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
    if (name == "_format" || name == "_pretty" || name == "_summary" || name == "_elements" ||
        name == "_explain") {
      continue;
    }
    if (name == "_count") {
      ASSIGN_OR_RETURN(int64_t n, ParseNonNegative(name, value));
      out.query.count = std::min(n, kMaxCount);
      continue;
    }
    if (name == "_snapshot") {  // the server's paging cursor: see store::SearchQuery
      ASSIGN_OR_RETURN(int64_t seq, ParseNonNegative(name, value));
      out.query.as_of_seq = seq;
      continue;
    }
    if (name == "_offset") {
      ASSIGN_OR_RETURN(out.query.offset, ParseNonNegative(name, value));
      continue;
    }
    if (name == "_after") {  // the server's keyset cursor in next links: see store::SearchQuery
      ASSIGN_OR_RETURN(int64_t seq, ParseNonNegative(name, value));
      out.query.after_seq = seq;
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
    if (name == "_include" || name == "_revinclude" || name == "_include:iterate" ||
        name == "_revinclude:iterate") {
      // SourceType:param[:TargetType], or * for every reference parameter.
      Include inc;
      inc.reverse = name.rfind("_revinclude", 0) == 0;
      inc.iterate = name.find(":iterate") != std::string::npos;
      if (value == "*") {
        inc.source_type = inc.reverse ? "" : type;
      } else {
        size_t c1 = value.find(':');
        size_t c2 = c1 == std::string::npos ? std::string::npos : value.find(':', c1 + 1);
        inc.source_type = value.substr(0, c1);
        if (c1 != std::string::npos) inc.param = value.substr(c1 + 1, c2 - c1 - 1);
        if (c2 != std::string::npos) inc.target_type = value.substr(c2 + 1);
        const ParamDef* def = R4Params().Find(inc.source_type, inc.param);
        bool ok = def && def->type == ParamType::kReference &&
                  (inc.target_type.empty() || model.FindResource(inc.target_type));
        if (!ok) {
          RETURN_IF_ERROR(unsupported(
              name, "'" + value + "' is not SourceType:referenceParameter[:TargetType]"));
          continue;
        }
      }
      if (inc.reverse && inc.source_type.empty()) {
        RETURN_IF_ERROR(unsupported(name, "'*' is not supported for _revinclude"));
        continue;
      }
      out.includes.push_back(std::move(inc));
      out.used.emplace_back(name, value);
      continue;
    }
    if (name == "_sort") {
      // _sort=a,-b: keys in order, '-' for descending.
      for (std::string key : SplitOr(value)) {
        store::SortKey k;
        if (!key.empty() && key[0] == '-') {
          k.descending = true;
          key = key.substr(1);
        }
        k.param = key;
        if (key != "_id" && key != "_lastUpdated") {
          const ParamDef* def = type.empty() ? nullptr : R4Params().Find(type, key);
          std::optional<store::IndexKind> kind =
              def ? IndexKindOf(def->type) : std::optional<store::IndexKind>();
          if (!kind || def->branches.empty()) {
            RETURN_IF_ERROR(unsupported(name, "'" + key + "' is not a sortable parameter"));
            continue;
          }
          k.kind = *kind;
          for (const ParamDef* part : def->union_of) k.any_param.push_back(part->code);
        }
        out.query.sort.push_back(std::move(k));
      }
      out.used.emplace_back(name, value);
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
    if (!type.empty()) {
      auto clause = ParseNamed(model, type, name, value, 0, terminology);
      if (clause.ok()) {
        store::IndexClause& c = *clause;
        c.patient_keyed = c.kind == store::IndexKind::kReference && c.any_of.size() == 1 &&
                          c.any_of[0].match == store::IndexPredicate::Match::kEqual &&
                          c.any_of[0].system == "Patient" && c.any_param.empty() &&
                          c.chain.empty() && !c.has && !c.negate && !c.missing &&
                          KeysPatient(type, c.param);
        out.query.clauses.push_back(std::move(clause).value());
        out.used.emplace_back(name, value);
        continue;
      }
      if (clause.status().code() == StatusCode::kNotImplemented) {
        RETURN_IF_ERROR(unsupported(name, clause.status().message()));
        continue;
      }
      if (clause.status().code() != StatusCode::kNotFound) {
        return Status::Invalid("search parameter '" + name + "': " + clause.status().message(),
                               name);
      }
    }
    RETURN_IF_ERROR(unsupported(name, type.empty()
                                          ? "is not supported for whole-system search"
                                          : "is not a supported search parameter for " + type));
  }
  return out;
}

}  // namespace taproot::search
