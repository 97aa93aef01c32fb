#include "fhirpath/engine.h"

#include <re2/re2.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include "common/base64.h"
#include "common/clock.h"
#include "common/json.h"
#include "fhir/narrative.h"
#include "fhir/ucum.h"
#include "fhirpath/parser.h"

namespace taproot::fhirpath {
namespace {

using Kind = Item::Kind;

// ---------------------------------------------------------------------------------------------
// Temporal values

int DaysIn(int y, int m) { return DaysInMonth(y, m); }

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// A temporal's fields as milliseconds since the epoch, read as if UTC (the zone is not applied).
int64_t FieldMillis(const Temporal& t) {
  int64_t secs =
      DaysFromCivil(t.year, t.month, t.day) * 86400 + t.hour * 3600 + t.minute * 60 + t.second;
  return secs * 1000 + t.millisecond;
}

// Sets a temporal's fields from milliseconds since the epoch (precision and zone unchanged).
void SetFieldMillis(Temporal& t, int64_t ms) {
  int64_t days = FloorDiv(ms, 86400000);
  int64_t rem = ms - days * 86400000;
  CivilDate d = CivilFromDays(days);
  t.year = static_cast<int>(d.year);
  t.month = d.month;
  t.day = d.day;
  t.hour = static_cast<int>(rem / 3600000);
  t.minute = static_cast<int>(rem / 60000 % 60);
  t.second = static_cast<int>(rem / 1000 % 60);
  t.millisecond = static_cast<int>(rem % 1000);
}

bool Digits(std::string_view s, size_t& pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t k = 0; k < n; ++k) {
    char c = s[pos + k];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += n;
  *out = v;
  return true;
}

}  // namespace

std::optional<Temporal> Temporal::Parse(std::string_view s, bool time_only) {
  Temporal t;
  size_t p = 0;
  auto parse_time = [&](Temporal& t) -> bool {
    if (!Digits(s, p, 2, &t.hour) || t.hour > 23) return false;
    t.precision = kHour;
    if (p < s.size() && s[p] == ':') {
      ++p;
      if (!Digits(s, p, 2, &t.minute) || t.minute > 59) return false;
      t.precision = kMinute;
      if (p < s.size() && s[p] == ':') {
        ++p;
        if (!Digits(s, p, 2, &t.second) || t.second > 59) return false;
        t.precision = kSecond;
        if (p < s.size() && s[p] == '.') {
          ++p;
          size_t start = p;
          int ms = 0, scale = 100;
          while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
            ms += (s[p] - '0') * scale;
            scale /= 10;
            ++p;
          }
          if (p == start) return false;
          t.millisecond = ms;
          t.precision = kMillisecond;
        }
      }
    }
    return true;
  };
  if (time_only) {
    if (!parse_time(t) || p != s.size()) return std::nullopt;
    return t;
  }
  if (!Digits(s, p, 4, &t.year)) return std::nullopt;
  t.precision = kYear;
  if (p < s.size() && s[p] == '-') {
    ++p;
    if (!Digits(s, p, 2, &t.month) || t.month < 1 || t.month > 12) return std::nullopt;
    t.precision = kMonth;
    if (p < s.size() && s[p] == '-') {
      ++p;
      if (!Digits(s, p, 2, &t.day) || t.day < 1 || t.day > DaysIn(t.year, t.month))
        return std::nullopt;
      t.precision = kDay;
    }
  }
  if (p < s.size() && s[p] == 'T') {
    ++p;
    if (p < s.size() && !parse_time(t)) return std::nullopt;
  }
  if (p < s.size()) {
    if (s[p] == 'Z') {
      t.tz_minutes = 0;
      ++p;
    } else if (s[p] == '+' || s[p] == '-') {
      int sign = s[p] == '-' ? -1 : 1, h = 0, m = 0;
      ++p;
      if (!Digits(s, p, 2, &h) || p >= s.size() || s[p] != ':') return std::nullopt;
      ++p;
      if (!Digits(s, p, 2, &m)) return std::nullopt;
      t.tz_minutes = sign * (h * 60 + m);
    }
  }
  if (p != s.size()) return std::nullopt;
  return t;
}

std::string Temporal::ToString(bool is_date, bool is_time) const {
  char buf[64];
  std::string out;
  if (!is_time) {
    std::snprintf(buf, sizeof buf, "%04d", year);
    out = buf;
    if (precision >= kMonth) {
      std::snprintf(buf, sizeof buf, "-%02d", month);
      out += buf;
    }
    if (precision >= kDay) {
      std::snprintf(buf, sizeof buf, "-%02d", day);
      out += buf;
    }
    if (is_date) return out;
    if (precision >= kHour) out += "T";
  }
  if (precision >= kHour) {
    std::snprintf(buf, sizeof buf, "%02d", hour);
    out += buf;
  }
  if (precision >= kMinute) {
    std::snprintf(buf, sizeof buf, ":%02d", minute);
    out += buf;
  }
  if (precision >= kSecond) {
    std::snprintf(buf, sizeof buf, ":%02d", second);
    out += buf;
  }
  if (precision >= kMillisecond) {
    std::snprintf(buf, sizeof buf, ".%03d", millisecond);
    out += buf;
  }
  if (tz_minutes && !is_time) {
    if (*tz_minutes == 0) {
      out += "Z";
    } else {
      int m = std::abs(*tz_minutes);
      std::snprintf(buf, sizeof buf, "%c%02d:%02d", *tz_minutes < 0 ? '-' : '+', m / 60, m % 60);
      out += buf;
    }
  }
  return out;
}

std::string Item::TypeName() const {
  switch (kind) {
    case Kind::kNode:
      return type ? type->name : "Element";
    case Kind::kBoolean:
      return "Boolean";
    case Kind::kInteger:
      return "Integer";
    case Kind::kDecimal:
      return "Decimal";
    case Kind::kString:
      return "String";
    case Kind::kDate:
      return "Date";
    case Kind::kDateTime:
      return "DateTime";
    case Kind::kTime:
      return "Time";
    case Kind::kQuantity:
      return "Quantity";
    case Kind::kTypeInfo:
      return "TypeInfo";
  }
  return "";
}

namespace {

// ---------------------------------------------------------------------------------------------
// FHIR nodes and their System values

const fhir::Model& Model() { return fhir::R4(); }

bool IsPrimitiveNode(const Item& i) { return i.IsNode() && i.type && i.type->IsPrimitive(); }

// What a FHIR primitive type's System value is, by the type's name. A switch on the length
// first: ToSystem runs for every comparison, and its chain of string compares (with a copy of
// each date's text) cost 6 % of a date filter's instructions (callgrind, thirteenth session).
enum class SystemOf { kBoolean, kInteger, kDecimal, kDate, kDateTime, kTime, kString };
SystemOf SystemTypeOf(std::string_view t) {
  switch (t.size()) {
    case 4:
      if (t == "date") return SystemOf::kDate;
      if (t == "time") return SystemOf::kTime;
      break;
    case 7:
      if (t == "boolean") return SystemOf::kBoolean;
      if (t == "integer") return SystemOf::kInteger;
      if (t == "decimal") return SystemOf::kDecimal;
      if (t == "instant") return SystemOf::kDateTime;
      break;
    case 8:
      if (t == "dateTime") return SystemOf::kDateTime;
      break;
    case 11:
      if (t == "positiveInt" || t == "unsignedInt") return SystemOf::kInteger;
      break;
  }
  return SystemOf::kString;
}

// The System value of a FHIR primitive node (or the item itself if it is already a System value).
std::optional<Item> ToSystem(const Item& item) {
  if (!item.IsNode()) return item;
  if (!IsPrimitiveNode(item) || !item.value || item.value->is_null()) return std::nullopt;
  const json::value& v = *item.value;
  const SystemOf system = SystemTypeOf(item.type->name);
  if (system == SystemOf::kBoolean && v.is_bool()) return Item::Boolean(v.get_bool());
  if (system == SystemOf::kInteger && v.is_int64()) return Item::Integer(v.get_int64());
  if (system == SystemOf::kDecimal && v.is_number()) return Item::Decimal(v.to_number<double>());
  if (!v.is_string()) return std::nullopt;
  std::string_view s = v.get_string();
  if (system == SystemOf::kDate) {
    if (auto d = Temporal::Parse(s, false)) return Item::Time(*d, Kind::kDate);
  } else if (system == SystemOf::kDateTime) {
    if (auto d = Temporal::Parse(s, false)) return Item::Time(*d, Kind::kDateTime);
  } else if (system == SystemOf::kTime) {
    if (auto d = Temporal::Parse(s, true)) return Item::Time(*d, Kind::kTime);
  }
  return Item::String(std::string(s));
}

// A Quantity node (or System quantity) as value and unit.
std::optional<Item> ToQuantity(const Item& item) {
  if (item.kind == Kind::kQuantity) return item;
  if (item.IsNode() && item.type && item.value && item.value->is_object()) {
    const std::string& n = item.type->name;
    if (n == "Quantity" || n == "Age" || n == "Duration" || n == "Distance" || n == "Count" ||
        n == "SimpleQuantity" || n == "MoneyQuantity") {
      const json::object& o = item.value->get_object();
      auto* v = o.if_contains("value");
      if (!v || !v->is_number()) return std::nullopt;
      std::string unit(GetString(o, "code"));
      if (unit.empty()) unit = std::string(GetString(o, "unit"));
      return Item::Quantity(v->to_number<double>(), unit);
    }
  }
  return std::nullopt;
}

// A resource's type. FHIR JSON writes resourceType first, so the first member is tried before
// a search by name.
std::string_view ResourceTypeOf(const json::object& obj) {
  if (obj.empty()) return {};
  const json::key_value_pair& first = *obj.begin();
  if (first.key() != "resourceType") return GetString(obj, "resourceType");
  return first.value().is_string() ? std::string_view(first.value().get_string()) : "";
}

// obj["_" + name] without building the string.
const json::value* FindUnderscored(const json::object& obj, std::string_view name) {
  for (const auto& kv : obj) {
    std::string_view k = kv.key();
    if (k.size() == name.size() + 1 && k[0] == '_' && SameText(k.substr(1), name)) {
      return &kv.value();
    }
  }
  return nullptr;
}

// Walking a large array of objects (Bundle.entry) is bound by memory latency: an element is
// three or four dependent cache misses deep (its table, its keys' text, a child object's table,
// that child's keys' text), and a plain loop waits for each in turn. ForEachChild runs a
// pipeline of prefetches instead, each stage reading only lines that the stage before fetched:
// kAheadTable elements ahead the element's table, then its keys and its child objects' tables,
// then those children's keys (and the whole of a child that a later ofType() keeps). An
// object's table is prefetched through its pointer alone: asking whether it is empty would read
// the table and stall where a prefetch should not. A table spans several lines, and a stage
// that reads one line more than the stage before fetched waits a full memory latency
// (PrefetchTable).
//
// PrefetchAhead and PrefetchTable are always inlined: GCC counts a prefetch as free of side
// effects, so it found a separate PrefetchAhead pure and deleted the call (the loop ran without
// any prefetch).
constexpr size_t kAheadTable = 8;
constexpr size_t kAheadChildren = 4;
constexpr size_t kAheadLast = 2;

// The first `lines` cache lines of an object's table, from its first member on. A member
// (json::key_value_pair) is 40 bytes: a Bundle entry's three members span up to three lines, and
// reading a resource's first members (resourceType, id, meta, status...) takes two. Fetching one
// line, as before, left the walk waiting on the next: with the bundles in main memory, path
// navigation ran 12k evaluations/s with one line and 24-35k with these (bench/RESULTS.md,
// twelfth session).
[[gnu::always_inline]] inline void PrefetchTable(const json::object& obj, int lines) {
  const char* table = reinterpret_cast<const char*>(obj.begin());
  for (int i = 0; i < lines; ++i) __builtin_prefetch(table + 64 * i);
}

// The whole of a non-empty object parsed into one arena (ParseJson): Boost.JSON allocates each
// key's text as it parses the key, each string and child as it parses them, and an object's table
// when the object ends, so the subtree lies between its first key's text and its table's end, in
// document order. Past kMaxBytes (a Patient with its extensions), or when the object was not
// built by a parser, only the table's first lines.
[[gnu::always_inline]] inline void PrefetchSubtree(const json::object& obj) {
  constexpr uintptr_t kMaxBytes = 64 * 64;
  uintptr_t begin = reinterpret_cast<uintptr_t>(obj.begin()->key().data()) & ~uintptr_t{63};
  uintptr_t end = reinterpret_cast<uintptr_t>(obj.end());
  if (end < begin || end - begin > kMaxBytes) {
    PrefetchTable(obj, 8);
    return;
  }
  for (uintptr_t p = begin; p < end; p += 64) __builtin_prefetch(reinterpret_cast<const void*>(p));
}

// `kept_type`: the resource type the step after next keeps (`entry` in
// `entry.resource.ofType(Observation)`), if any. A child whose first member holds it (in FHIR
// JSON, resourceType comes first) will be read further, status, code.coding, value and so on,
// each a dependent miss deep, so its whole subtree is fetched (PrefetchSubtree); fetching eight
// lines of its table, as before, left where() and ofType() walks waiting on every member object
// (bench/RESULTS.md, thirteenth session). Children of other types are only typed and dropped,
// and fetching more of them would cost bandwidth for nothing.
[[gnu::always_inline]] inline void PrefetchAhead(const json::array& arr, size_t k,
                                                 std::string_view next_member,
                                                 std::string_view kept_type) {
  const size_t n = arr.size();
  // A key's length is in the table: keys that cannot be next_member are skipped unread.
  auto wanted = [&](std::string_view key) {
    return next_member.empty() || key.size() == next_member.size();
  };
  if (k + kAheadTable < n && arr[k + kAheadTable].is_object()) {
    PrefetchTable(arr[k + kAheadTable].get_object(), 3);
  }
  if (k + kAheadChildren < n && arr[k + kAheadChildren].is_object()) {
    for (const auto& kv : arr[k + kAheadChildren].get_object()) {
      if (!wanted(kv.key())) continue;
      __builtin_prefetch(kv.key().data());
      if (kv.value().is_object()) PrefetchTable(kv.value().get_object(), 2);
      if (!next_member.empty()) break;  // one member of that length is enough to fetch
    }
  }
  if (k + kAheadLast < n && arr[k + kAheadLast].is_object()) {
    for (const auto& kv : arr[k + kAheadLast].get_object()) {
      if (wanted(kv.key()) && kv.value().is_object() && !kv.value().get_object().empty()) {
        const json::object& child = kv.value().get_object();
        __builtin_prefetch(child.begin()->key().data());
        const json::value& first = child.begin()->value();
        if (!kept_type.empty() && first.is_string() && first.get_string() == kept_type) {
          PrefetchSubtree(child);
        }
        if (!next_member.empty()) break;
      }
    }
  }
}

// What a walk of path steps knows beyond the current step's name, to save ForEachChild work.
struct StepHints {
  // Keep only resources of this type (children of an abstract Resource element, such as
  // Bundle.entry.resource), dropped before their type is looked up: the walk of
  // `resource.ofType(Patient)` over a Bundle passes "Patient". `only_type` is its definition,
  // when it names a FHIR type.
  std::string_view only_resource;
  const fhir::TypeDef* only_type = nullptr;
  // The member the next step reads from each child (`resource` for `entry.resource`): only it
  // is prefetched ahead. Empty: every child object.
  std::string_view next_member;
  // The resource type the step after next_member keeps (`resource.ofType(Observation)`), if
  // any: see PrefetchAhead.
  std::string_view next_kept_type;
  // If not 0, the hash of `name` in the type's property index, computed at compile time.
  size_t name_hash = 0;
};

// Calls emit(child) for each child of a node named `name` (value[x] choices by their stem), in
// document order.
// Returns the choice element if `name` is one of its typed names (valueQuantity), which is not a
// FHIRPath name and selects nothing.
template <typename Emit>
const fhir::ElementDef* ForEachChild(const Item& item, std::string_view name, Emit&& emit,
                                     const StepHints& hints = {}) {
  if (!item.IsNode() || !item.type) return nullptr;
  const fhir::TypeDef::Property* p = hints.name_hash
                                         ? item.type->FindProperty(name, hints.name_hash)
                                         : item.type->FindProperty(name);
  if (p && p->element->choice) return p->element;
  if (!item.value || !item.value->is_object()) return nullptr;
  const json::object& obj = item.value->get_object();
  const fhir::TypeDef* type = item.type;
  auto add = [&](const json::value* v, const json::value* ext, const fhir::TypeDef* t) {
    auto push = [&](const json::value* one, const json::value* one_ext) {
      // Resources of other types are dropped before an item is made for them.
      const fhir::TypeDef* child_type = t;
      if (t && t->IsAbstractResource() && one && one->is_object()) {
        std::string_view resource_type = ResourceTypeOf(one->get_object());
        if (!hints.only_resource.empty() && resource_type != hints.only_resource) return;
        if (hints.only_type && hints.only_type->kind == fhir::TypeDef::Kind::kResource) {
          child_type = hints.only_type;  // resource_type is its name
        } else if (auto* rt = Model().FindResource(resource_type)) {
          child_type = rt;
        }
      }
      Item child;
      child.value = one;
      child.ext = one_ext;
      child.type = child_type;
      emit(child);
    };
    if (v && v->is_array()) {
      const json::array& arr = v->get_array();
      const json::array* exts = ext && ext->is_array() ? &ext->get_array() : nullptr;
      const size_t n = arr.size();
      for (size_t k = 0; k < n; ++k) {
        if (n > kAheadLast) PrefetchAhead(arr, k, hints.next_member, hints.next_kept_type);
        const json::value* e =
            exts && k < exts->size() && !(*exts)[k].is_null() ? &(*exts)[k] : nullptr;
        if (arr[k].is_null() && !e) continue;
        push(arr[k].is_null() ? nullptr : &arr[k], e);
      }
    } else if (!v && ext && ext->is_array()) {
      for (const auto& e : ext->get_array()) {
        if (!e.is_null()) push(nullptr, &e);
      }
    } else if (v || ext) {
      push(v, ext);
    }
  };
  if (p) {
    const json::value* v = FindKey(obj, name);
    // Only primitives have a `_name` sibling.
    const json::value* ext = p->type->IsPrimitive() ? FindUnderscored(obj, name) : nullptr;
    add(v, ext, p->type);
    return nullptr;
  }
  // A choice element by its stem (value -> valueQuantity, valueString...): one pass over the
  // object's keys, each looked up in the type's property index.
  if (!type->FindChoice(name)) return nullptr;
  for (const auto& kv : obj) {
    std::string_view k = kv.key();
    bool underscore = !k.empty() && k[0] == '_';
    std::string_view base = underscore ? k.substr(1) : k;
    if (base.size() <= name.size() || !SameText(base.substr(0, name.size()), name)) continue;
    const fhir::TypeDef::Property* p = type->FindProperty(base);
    if (!p || !p->element->choice || p->element->name != name) continue;
    if (underscore) {
      if (!FindKey(obj, base)) add(nullptr, &kv.value(), p->type);  // extension without value
      continue;
    }
    add(&kv.value(), p->type->IsPrimitive() ? FindUnderscored(obj, base) : nullptr, p->type);
  }
  return nullptr;
}

void Children(const Item& item, std::string_view name, Collection& out) {
  ForEachChild(item, name, [&](const Item& child) { out.push_back(child); });
}

// Whether a type (FHIR or System) is `name` or derives from it.
bool TypeMatches(const Item& item, const std::string& qualified) {
  std::string ns, name = qualified;
  if (size_t dot = qualified.find('.'); dot != std::string::npos) {
    ns = qualified.substr(0, dot);
    name = qualified.substr(dot + 1);
  }
  if (item.IsNode()) {
    if (ns == "System") return false;
    if (!item.type) return false;
    std::string t = item.type->name;
    if (t == name) return true;
    if (item.type->kind == fhir::TypeDef::Kind::kResource) {
      if (name == "Resource") return true;
      if (name == "DomainResource") return t != "Bundle" && t != "Binary" && t != "Parameters";
      return false;
    }
    static const std::map<std::string, std::string> kBase = {{"code", "string"},
                                                             {"id", "string"},
                                                             {"markdown", "string"},
                                                             {"url", "uri"},
                                                             {"canonical", "uri"},
                                                             {"oid", "uri"},
                                                             {"uuid", "uri"},
                                                             {"positiveInt", "integer"},
                                                             {"unsignedInt", "integer"},
                                                             {"Age", "Quantity"},
                                                             {"Count", "Quantity"},
                                                             {"Distance", "Quantity"},
                                                             {"Duration", "Quantity"},
                                                             {"SimpleQuantity", "Quantity"},
                                                             {"MoneyQuantity", "Quantity"}};
    for (auto it = kBase.find(t); it != kBase.end(); it = kBase.find(t)) {
      t = it->second;
      if (t == name) return true;
    }
    return name == "Element" && item.type->kind != fhir::TypeDef::Kind::kResource;
  }
  if (ns == "FHIR") return false;
  return item.TypeName() == name;
}

// ---------------------------------------------------------------------------------------------
// Units: a small UCUM table (mass, length, time) and FHIRPath's calendar words, enough to compare
// and convert the common clinical units. Unknown units compare only with themselves.

// The UCUM code for a quantity's unit: FHIRPath's definite-duration keywords (week, days,
// hours, ...) are their UCUM equivalents; year and month (calendar durations) have none.
std::optional<std::string> UcumCode(const std::string& unit) {
  static const std::pair<const char*, const char*> kWords[] = {
      {"week", "wk"},  {"weeks", "wk"},  {"day", "d"},          {"days", "d"},
      {"hour", "h"},   {"hours", "h"},   {"minute", "min"},     {"minutes", "min"},
      {"second", "s"}, {"seconds", "s"}, {"millisecond", "ms"}, {"milliseconds", "ms"}};
  for (auto [word, code] : kWords) {
    if (unit == word) return std::string(code);
  }
  if (unit == "year" || unit == "years" || unit == "month" || unit == "months") {
    return std::nullopt;
  }
  return unit;
}

// b's value in a's unit, if the two quantities are comparable.
std::optional<double> InUnitOf(const Item& a, const Item& b) {
  if (a.string == b.string) return b.decimal;
  auto ua = UcumCode(a.string), ub = UcumCode(b.string);
  if (!ua || !ub) return std::nullopt;
  return fhir::ucum::Convert(b.decimal, *ub, *ua);
}

// Both quantities in a's unit, if they are comparable.
std::optional<std::pair<double, double>> SameUnit(const Item& a, const Item& b) {
  auto vb = InUnitOf(a, b);
  if (!vb) return std::nullopt;
  return std::make_pair(a.decimal, *vb);
}

bool NearlyEqual(double a, double b) {
  return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
}

// ---------------------------------------------------------------------------------------------
// Equality, equivalence and ordering

std::optional<Item> Singleton(const Collection& c) {
  if (c.size() != 1) return std::nullopt;
  return ToSystem(c[0]).value_or(c[0]);
}

bool IsNumber(const Item& i) { return i.kind == Kind::kInteger || i.kind == Kind::kDecimal; }
double Num(const Item& i) {
  return i.kind == Kind::kInteger ? static_cast<double>(i.integer) : i.decimal;
}
bool IsTemporal(const Item& i) {
  return i.kind == Kind::kDate || i.kind == Kind::kDateTime || i.kind == Kind::kTime;
}

// Compares two temporals: -1/0/1, or nullopt when their precisions make it uncertain.
std::optional<int> CompareTemporal(const Temporal& a0, const Temporal& b0) {
  Temporal a = a0, b = b0;
  if (a.tz_minutes.has_value() != b.tz_minutes.has_value() && a.precision >= Temporal::kHour &&
      b.precision >= Temporal::kHour) {
    return std::nullopt;  // one local, one zoned: cannot tell
  }
  // Normalise both to UTC when their zones differ.
  if (a.tz_minutes && b.tz_minutes && *a.tz_minutes != *b.tz_minutes &&
      a.precision >= Temporal::kHour && b.precision >= Temporal::kHour) {
    for (Temporal* t : {&a, &b}) {
      SetFieldMillis(*t, FieldMillis(*t) - int64_t{*t->tz_minutes} * 60000);
      t->tz_minutes = 0;
    }
  }
  int fields_a[] = {a.year, a.month, a.day, a.hour, a.minute, a.second, a.millisecond};
  int fields_b[] = {b.year, b.month, b.day, b.hour, b.minute, b.second, b.millisecond};
  // Seconds and milliseconds are one precision for comparison purposes.
  auto eff = [](int p) { return p == Temporal::kMillisecond ? Temporal::kSecond : p; };
  int common = std::min(eff(a.precision), eff(b.precision));
  for (int k = 0; k < 7; ++k) {
    int level = k + 1;
    if (level > common && !(level == Temporal::kMillisecond && common == Temporal::kSecond)) break;
    if (fields_a[k] != fields_b[k]) return fields_a[k] < fields_b[k] ? -1 : 1;
  }
  if (eff(a.precision) != eff(b.precision)) return std::nullopt;
  return 0;
}

bool JsonEqual(const json::value& a, const json::value& b) { return a == b; }

// A JSON value of a FHIR primitive type, as text if its System value is a String.
bool PrimitiveText(const fhir::TypeDef& type, const json::value& v, std::string_view& out) {
  if (!v.is_string()) return false;
  const SystemOf system = SystemTypeOf(type.name);
  if (system == SystemOf::kDate || system == SystemOf::kDateTime || system == SystemOf::kTime) {
    return false;
  }
  const json::string& s = v.get_string();
  out = std::string_view(s.data(), s.size());
  return true;
}

// The text of a string-valued item (a System String, or a FHIR primitive other than the dates
// and times whose System value is a String), without converting it.
bool StringText(const Item& i, std::string_view& out) {
  if (i.kind == Kind::kString) {
    out = i.string;
    return true;
  }
  return IsPrimitiveNode(i) && i.value && PrimitiveText(*i.type, *i.value, out);
}

// `=`: true, false, or empty (nullopt) when the operands cannot be compared with certainty.
std::optional<bool> Equal(const Item& x0, const Item& y0) {
  // The common case (`status = 'final'`, `code = %code`) compares two strings in place.
  if (std::string_view a, b; StringText(x0, a) && StringText(y0, b)) return a == b;
  std::optional<Item> xs = ToSystem(x0), ys = ToSystem(y0);
  if (x0.IsNode() && y0.IsNode() && !xs && !ys) {
    if (!x0.value || !y0.value) return false;
    return JsonEqual(*x0.value, *y0.value);
  }
  if (auto qx = ToQuantity(x0), qy = ToQuantity(y0); qx && qy) {
    auto v = SameUnit(*qx, *qy);
    if (!v) return std::nullopt;
    return NearlyEqual(v->first, v->second);
  }
  if (!xs || !ys) return false;
  const Item& x = *xs;
  const Item& y = *ys;
  if (IsNumber(x) && IsNumber(y)) return NearlyEqual(Num(x), Num(y));
  if (x.kind == Kind::kString && y.kind == Kind::kString) return x.string == y.string;
  if (x.kind == Kind::kBoolean && y.kind == Kind::kBoolean) return x.boolean == y.boolean;
  if (IsTemporal(x) && IsTemporal(y)) {
    if ((x.kind == Kind::kTime) != (y.kind == Kind::kTime)) return false;
    auto c = CompareTemporal(x.temporal, y.temporal);
    if (!c) return std::nullopt;
    return *c == 0;
  }
  return false;
}

std::string Normalize(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

int DecimalPlaces(double v) {
  for (int p = 0; p < 10; ++p) {
    double scaled = v * std::pow(10, p);
    if (std::fabs(scaled - std::round(scaled)) < 1e-9) return p;
  }
  return 10;
}

bool Equivalent(const Item& x0, const Item& y0) {
  std::optional<Item> xs = ToSystem(x0), ys = ToSystem(y0);
  if (x0.IsNode() && y0.IsNode() && !xs && !ys) {
    return x0.value && y0.value && JsonEqual(*x0.value, *y0.value);
  }
  if (auto qx = ToQuantity(x0), qy = ToQuantity(y0); qx && qy) {
    // Equivalent at the precision of the less precise operand, in its unit.
    bool x_coarser = DecimalPlaces(qx->decimal) <= DecimalPlaces(qy->decimal);
    const Item& coarse = x_coarser ? *qx : *qy;
    const Item& fine = x_coarser ? *qy : *qx;
    auto v = InUnitOf(coarse, fine);
    if (!v) return false;
    double f = std::pow(10, DecimalPlaces(coarse.decimal));
    return std::round(coarse.decimal * f) == std::round(*v * f);
  }
  if (!xs || !ys) return false;
  const Item& x = *xs;
  const Item& y = *ys;
  if (IsNumber(x) && IsNumber(y)) {
    int p = std::min(DecimalPlaces(Num(x)), DecimalPlaces(Num(y)));
    double f = std::pow(10, p);
    return std::round(Num(x) * f) == std::round(Num(y) * f);
  }
  if (x.kind == Kind::kString && y.kind == Kind::kString)
    return Normalize(x.string) == Normalize(y.string);
  if (x.kind == Kind::kBoolean && y.kind == Kind::kBoolean) return x.boolean == y.boolean;
  if (IsTemporal(x) && IsTemporal(y)) {
    auto c = CompareTemporal(x.temporal, y.temporal);
    return c && *c == 0;
  }
  return false;
}

// Ordering for <, >, <=, >=: -1/0/1, nullopt when not comparable (empty result), or an error.
Result<std::optional<int>> Compare(const Item& x0, const Item& y0) {
  if (auto qx = ToQuantity(x0), qy = ToQuantity(y0); qx && qy) {
    auto v = SameUnit(*qx, *qy);
    if (!v) return std::optional<int>();
    if (NearlyEqual(v->first, v->second)) return std::optional<int>(0);
    return std::optional<int>(v->first < v->second ? -1 : 1);
  }
  std::optional<Item> xs = ToSystem(x0), ys = ToSystem(y0);
  if (!xs || !ys) return Status::Invalid("cannot compare these values");
  const Item& x = *xs;
  const Item& y = *ys;
  if (IsNumber(x) && IsNumber(y)) {
    if (NearlyEqual(Num(x), Num(y))) return std::optional<int>(0);
    return std::optional<int>(Num(x) < Num(y) ? -1 : 1);
  }
  if (x.kind == Kind::kString && y.kind == Kind::kString) {
    int c = x.string.compare(y.string);
    return std::optional<int>(c < 0 ? -1 : c > 0 ? 1 : 0);
  }
  if (IsTemporal(x) && IsTemporal(y) && (x.kind == Kind::kTime) == (y.kind == Kind::kTime)) {
    return CompareTemporal(x.temporal, y.temporal);
  }
  return Status::Invalid("cannot compare " + x.TypeName() + " with " + y.TypeName());
}

bool Contains(const Collection& c, const Item& item) {
  for (const Item& i : c) {
    auto e = Equal(i, item);
    if (e && *e) return true;
  }
  return false;
}

Collection Distinct(const Collection& c) {
  Collection out;
  for (const Item& i : c)
    if (!Contains(out, i)) out.push_back(i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The evaluator

// strtod, which (unlike std::stod) never throws: out-of-range text becomes +/-inf or 0.
double ParseDouble(const std::string& text) { return std::strtod(text.c_str(), nullptr); }

// 32-bit FHIRPath integers: a result outside the range is empty, not wrapped.
std::optional<int64_t> CheckedInt(int64_t a, int64_t b, char op) {
  int64_t r = 0;
  bool overflow = op == '+'   ? __builtin_add_overflow(a, b, &r)
                  : op == '-' ? __builtin_sub_overflow(a, b, &r)
                              : __builtin_mul_overflow(a, b, &r);
  if (overflow || r > INT32_MAX || r < INT32_MIN) return std::nullopt;
  return r;
}

// An Integer from a double, or nothing if it is not finite or leaves the 32-bit range.
Collection IntegerFrom(double v) {
  if (!std::isfinite(v) || v > INT32_MAX || v < INT32_MIN) return Collection{};
  return Collection{Item::Integer(static_cast<int64_t>(v))};
}

int Scale(const std::string& number) {
  size_t dot = number.find('.');
  return dot == std::string::npos ? 0 : static_cast<int>(number.size() - dot - 1);
}

// A function or operator name, compared against the many literals of the dispatch chains by
// length first and then inline (std::string == const char* calls memcmp for every literal).
struct Name {
  const std::string& s;
  bool operator==(std::string_view other) const { return SameText(s, other); }
  bool operator!=(std::string_view other) const { return !SameText(s, other); }
  operator const std::string&() const { return s; }
  size_t rfind(const char* prefix, size_t pos) const { return s.rfind(prefix, pos); }
  char operator[](size_t i) const { return s[i]; }
  std::string substr(size_t pos, size_t n = std::string::npos) const { return s.substr(pos, n); }
  friend std::string operator+(const Name& a, const char* b) { return a.s + b; }
  friend std::string operator+(const char* a, const Name& b) { return a + b.s; }
  friend std::string operator+(const std::string& a, const Name& b) { return a + b.s; }
};

// The (system, code) pairs of a Coding or CodeableConcept node.
void CodingsOf(const Item& item, std::vector<std::pair<std::string, std::string>>& out) {
  if (!item.IsNode() || !item.type || !item.value || !item.value->is_object()) return;
  const json::object& obj = item.value->get_object();
  if (item.type->name == "Coding") {
    std::string_view code = GetString(obj, "code");
    if (!code.empty()) out.emplace_back(GetString(obj, "system"), code);
    return;
  }
  if (item.type->name != "CodeableConcept") return;
  const json::value* codings = FindKey(obj, "coding");
  if (!codings || !codings->is_array()) return;
  for (const auto& c : codings->get_array()) {
    if (!c.is_object()) continue;
    std::string_view code = GetString(c.get_object(), "code");
    if (!code.empty()) out.emplace_back(GetString(c.get_object(), "system"), code);
  }
}

struct Context {
  const Item* resource;
  const EvalOptions* options;
  const std::vector<Collection>* literals;
  const Item* this_item = nullptr;
  int64_t index = 0;
  const Collection* total = nullptr;
};

std::optional<bool> ToBool(const Collection& c, Status* error) {
  if (c.empty()) return std::nullopt;
  if (c.size() > 1) {
    *error = Status::Invalid("expected a single boolean, got a collection of " +
                             std::to_string(c.size()));
    return std::nullopt;
  }
  auto s = ToSystem(c[0]);
  if (s && s->kind == Kind::kBoolean) return s->boolean;
  return true;  // a single non-boolean item is true (singleton evaluation of collections)
}

class Evaluator {
 public:
  explicit Evaluator(Context ctx) : ctx_(ctx) {
    char here;
    stack_base_ = reinterpret_cast<uintptr_t>(&here);
  }

  Result<Collection> Eval(const Expr& e, const Collection& focus) {
    // The parser bounds an expression's height, but how much stack a level takes depends on the
    // build (sanitizers multiply frame sizes); bounding the stack actually used keeps deeply
    // nested calls an error, never an overflow, on any thread with the default 8 MiB stack.
    char here;
    if (stack_base_ - reinterpret_cast<uintptr_t>(&here) > kStackBudget) {
      return Status::Invalid("the expression nests too deeply to evaluate");
    }
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return Literal(e);
      case Expr::Kind::kEmpty:
        return Collection{};
      case Expr::Kind::kThis:
        return ctx_.this_item ? Collection{*ctx_.this_item} : focus;
      case Expr::Kind::kIndex:
        return Collection{Item::Integer(ctx_.index)};
      case Expr::Kind::kTotal:
        return ctx_.total ? *ctx_.total : Collection{};
      case Expr::Kind::kVariable:
        return Variable(e);
      case Expr::Kind::kIdentifier:
        return Member(focus, e.text, /*root=*/true, e.name_hash);
      case Expr::Kind::kMember: {
        RETURN_IF_ERROR(CheckStaticMember(*e.children[0], e.text));
        if (e.steps_base) return Steps(e, focus);
        ASSIGN_OR_RETURN(Collection base, Eval(*e.children[0], focus));
        return Member(base, e.text, false, e.name_hash);
      }
      case Expr::Kind::kIndexer: {
        RETURN_IF_ERROR(CheckOrdered(e.children[0].get(), "an index"));
        ASSIGN_OR_RETURN(Collection base, Eval(*e.children[0], focus));
        ASSIGN_OR_RETURN(Collection idx, Eval(*e.children[1], focus));
        auto i = Singleton(idx);
        if (!i || i->kind != Kind::kInteger) return Collection{};
        if (i->integer < 0 || i->integer >= static_cast<int64_t>(base.size())) return Collection{};
        return Collection{base[static_cast<size_t>(i->integer)]};
      }
      case Expr::Kind::kUnary: {
        ASSIGN_OR_RETURN(Collection v, Eval(*e.children[0], focus));
        if (v.empty() || e.text == "+") return v;
        auto s = Singleton(v);
        if (!s) return Status::Invalid("unary minus needs a single value");
        if (s->kind == Kind::kInteger) return Collection{Item::Integer(-s->integer)};
        if (s->kind == Kind::kDecimal) return Collection{Item::Decimal(-s->decimal, s->scale)};
        if (s->kind == Kind::kQuantity)
          return Collection{Item::Quantity(-s->decimal, s->string, s->scale)};
        return Status::Invalid("unary minus needs a number");
      }
      case Expr::Kind::kBinary:
        return Binary(e, focus);
      case Expr::Kind::kTypeOp: {
        ASSIGN_OR_RETURN(Collection v, Eval(*e.children[0], focus));
        if (v.empty()) return Collection{};
        if (v.size() > 1) {
          if (e.text != "as" || !ctx_.options->as_filters) {
            return Status::Invalid("'" + e.text + "' needs a single value");
          }
          Collection out;
          for (const Item& i : v) {
            if (TypeMatches(i, e.type_name)) out.push_back(i);
          }
          return out;
        }
        bool match = TypeMatches(v[0], e.type_name);
        if (e.text == "is") return Collection{Item::Boolean(match)};
        return match ? v : Collection{};
      }
      case Expr::Kind::kFunction:
        if (e.steps_base) return Steps(e, focus);
        return Function(e, focus);
    }
    return Status::Internal("unknown expression node");
  }

 private:
  Result<Collection> Literal(const Expr& e) {
    if (e.literal_slot >= 0) return (*ctx_.literals)[static_cast<size_t>(e.literal_slot)];
    return LiteralValue(e);
  }

 public:
  static Result<Collection> LiteralValue(const Expr& e) {
    switch (e.literal_kind) {
      case Expr::LiteralKind::kBoolean:
        return Collection{Item::Boolean(e.text == "true")};
      case Expr::LiteralKind::kString:
        return Collection{Item::String(e.text)};
      case Expr::LiteralKind::kInteger: {
        errno = 0;
        long long v = std::strtoll(e.text.c_str(), nullptr, 10);
        if (errno == ERANGE || v > INT32_MAX) return Collection{Item::Decimal(ParseDouble(e.text))};
        return Collection{Item::Integer(v)};
      }
      case Expr::LiteralKind::kDecimal:
        return Collection{Item::Decimal(ParseDouble(e.text), Scale(e.text))};
      case Expr::LiteralKind::kQuantity:
        return Collection{Item::Quantity(ParseDouble(e.text), e.unit, Scale(e.text))};
      case Expr::LiteralKind::kDate:
      case Expr::LiteralKind::kDateTime:
      case Expr::LiteralKind::kTime: {
        bool time = e.literal_kind == Expr::LiteralKind::kTime;
        std::string text = e.text;
        if (!time && !text.empty() && text.back() == 'T') text.pop_back();  // @2015T
        auto t = Temporal::Parse(text, time);
        if (!t) return Status::Invalid("'@" + e.text + "' is not a valid date, time or dateTime");
        Kind k = time ? Kind::kTime
                 : (e.literal_kind == Expr::LiteralKind::kDate && e.text.back() != 'T')
                     ? Kind::kDate
                     : Kind::kDateTime;
        return Collection{Item::Time(*t, k)};
      }
    }
    return Collection{};
  }

 private:
  Result<Collection> Variable(const Expr& e) {
    Name n{e.text};
    if (n == "resource" || n == "rootResource" || n == "context") return Collection{*ctx_.resource};
    if (n == "ucum") return Collection{Item::String("http://unitsofmeasure.org")};
    if (n == "sct") return Collection{Item::String("http://snomed.info/sct")};
    if (n == "loinc") return Collection{Item::String("http://loinc.org")};
    auto it = ctx_.options->variables.find(n.s);
    if (it != ctx_.options->variables.end()) return it->second;
    if (n.rfind("vs-", 0) == 0)
      return Collection{Item::String("http://hl7.org/fhir/ValueSet/" + n.substr(3))};
    if (n.rfind("ext-", 0) == 0) {
      return Collection{Item::String("http://hl7.org/fhir/StructureDefinition/" + n.substr(4))};
    }
    return Status::Invalid("unknown variable %" + n);
  }

  Result<Collection> Member(const Collection& focus, const std::string& name, bool root,
                            size_t name_hash) {
    Collection out;
    for (const Item& item : focus) {
      RETURN_IF_ERROR(MemberOf(
          item, name, root, [&](const Item& c) { out.push_back(c); },
          StepHints{.name_hash = name_hash}));
    }
    return out;
  }

  // The items `name` selects from one item, passed to emit in order.
  template <typename Emit>
  Status MemberOf(const Item& item, const std::string& name, bool root, Emit&& emit,
                  const StepHints& hints = {}) {
    if (item.kind == Kind::kTypeInfo) {
      size_t bar = item.string.find('|');
      if (name == "namespace") emit(Item::String(item.string.substr(0, bar)));
      if (name == "name") emit(Item::String(item.string.substr(bar + 1)));
      return Status::Ok();
    }
    if (!item.IsNode() || !item.type) return Status::Ok();  // System values have no members
    auto choice_error = [&](const fhir::ElementDef& el) {
      return Status::Invalid("'" + name + "' names one type of the choice element '" + el.name +
                             "'; use " + el.name + " (with ofType() or as) instead");
    };
    if (ctx_.options->strict) {
      if (const fhir::TypeDef::Property* p = item.type->FindProperty(name);
          p && p->element->choice) {
        return choice_error(*p->element);
      }
      if (!root) {
        RETURN_IF_ERROR(CheckMember(item, name));
      } else if (!name.empty() && std::isupper(static_cast<unsigned char>(name[0])) &&
                 Model().FindResource(name) && !TypeMatches(item, name)) {
        return Status::Invalid("'" + name + "' does not match the context type " + item.type->name);
      } else if (!(!name.empty() && std::isupper(static_cast<unsigned char>(name[0])) &&
                   Model().FindType(name))) {
        RETURN_IF_ERROR(CheckMember(item, name));
      }
    }
    bool any = false;
    if (const fhir::ElementDef* choice = ForEachChild(
            item, name,
            [&](const Item& c) {
              any = true;
              emit(c);
            },
            hints)) {
      return choice_error(*choice);
    }
    // At the start of a path, a type name selects the context if it is of that type.
    if (root && !any && item.type->kind == fhir::TypeDef::Kind::kResource && !name.empty() &&
        std::isupper(static_cast<unsigned char>(name[0])) && TypeMatches(item, name)) {
      emit(item);
    }
    return Status::Ok();
  }

  // ofType(T): the item's type is exactly T (a resource also matches its base types).
  static bool OfType(const Item& i, const Expr& step) {
    if (!i.IsNode()) return TypeMatches(i, step.type_name);
    if (!i.type) return false;
    if (SameText(i.type->name, step.bare_type)) return true;
    // Only an abstract resource type (Resource, DomainResource) can match a resource by base.
    return step.abstract_type && i.type->kind == fhir::TypeDef::Kind::kResource &&
           TypeMatches(i, step.type_name);
  }

  // Walks one item through path steps k.. (members and ofType), emitting what comes out of the
  // last. Depth first gives the same order as step by step: each step maps every item to its
  // children in order and concatenates.
  Status Walk(const Item& item, const std::vector<const Expr*>& steps, size_t k, Collection& out) {
    if (k == steps.size()) {
      out.push_back(item);
      return Status::Ok();
    }
    const Expr& step = *steps[k];
    if (step.kind == Expr::Kind::kFunction) {  // ofType
      return OfType(item, step) ? Walk(item, steps, k + 1, out) : Status::Ok();
    }
    // What the next step lets this one skip: a member followed by ofType(a concrete type)
    // drops other resources before typing them; one followed by a member prefetches only that.
    StepHints hints;
    hints.name_hash = step.name_hash;
    const Expr* next = k + 1 < steps.size() ? steps[k + 1] : nullptr;
    if (next && next->kind == Expr::Kind::kFunction && !next->abstract_type) {
      hints.only_resource = next->bare_type;
      hints.only_type = next->bare_type_def;
    } else if (next && next->kind == Expr::Kind::kMember) {
      hints.next_member = next->text;
      const Expr* after = k + 2 < steps.size() ? steps[k + 2] : nullptr;
      if (after && after->kind == Expr::Kind::kFunction && !after->abstract_type) {
        hints.next_kept_type = after->bare_type;
      }
    }
    Status st;
    RETURN_IF_ERROR(MemberOf(
        item, step.text, false,
        [&](const Item& c) {
          if (st.ok()) st = Walk(c, steps, k + 1, out);
        },
        hints));
    return st;
  }

  Result<Collection> Steps(const Expr& e, const Collection& focus) {
    if (ctx_.options->strict) {
      for (size_t k = 0; k < e.steps.size(); ++k) {
        if (e.steps[k]->kind != Expr::Kind::kMember) continue;
        RETURN_IF_ERROR(
            CheckStaticMember(k == 0 ? *e.steps_base : *e.steps[k - 1], e.steps[k]->text));
      }
    }
    ASSIGN_OR_RETURN(Collection base, Eval(*e.steps_base, focus));
    Collection out;
    for (const Item& item : base) RETURN_IF_ERROR(Walk(item, e.steps, 0, out));
    return out;
  }

  // Strict mode: the name must be an element of the node's type (choices by their stem).
  static Status CheckMember(const Item& item, const std::string& name) {
    return CheckMemberOfType(*item.type, name);
  }
  static Status CheckMemberOfType(const fhir::TypeDef& type, const std::string& name) {
    for (const fhir::ElementDef& el : type.elements) {
      if (el.name == name) return Status::Ok();
    }
    return Status::Invalid("'" + name + "' is not an element of " + type.name);
  }

  // The FHIR type an expression's items are known to have before evaluation (x as T,
  // x.as(T), x.ofType(T)), or null. Strict mode checks member names against it even when the
  // collection turns out empty, as a static type checker would.
  static const fhir::TypeDef* StaticType(const Expr& e) {
    std::string type;
    if (e.kind == Expr::Kind::kTypeOp && e.text == "as") {
      type = e.type_name;
    } else if (e.kind == Expr::Kind::kFunction && (e.text == "as" || e.text == "ofType") &&
               e.children.size() == 2 && e.children[1]) {
      type = TypeArg(*e.children[1]);
    } else {
      return nullptr;
    }
    if (type.rfind("System.", 0) == 0) return nullptr;
    if (type.rfind("FHIR.", 0) == 0) type = type.substr(5);
    const fhir::TypeDef* t = Model().FindType(type);
    return t && !t->IsPrimitive() ? t : nullptr;
  }

  Status CheckStaticMember(const Expr& focus, const std::string& name) {
    if (!ctx_.options->strict) return Status::Ok();
    if (const fhir::TypeDef* t = StaticType(focus)) return CheckMemberOfType(*t, name);
    return Status::Ok();
  }

  // Whether the order of an expression's items is undefined: children(), descendants(), and
  // paths and filters over them.
  static bool Unordered(const Expr& e) {
    if (e.kind == Expr::Kind::kFunction) {
      if (e.text == "children" || e.text == "descendants") return true;
      static const char* kKeeps[] = {"where", "select", "ofType", "distinct", "repeat"};
      for (const char* k : kKeeps) {
        if (e.text == k) return e.children[0] && Unordered(*e.children[0]);
      }
      return false;
    }
    if (e.kind == Expr::Kind::kMember) return Unordered(*e.children[0]);
    return false;
  }

  Status CheckOrdered(const Expr* focus, const std::string& what) {
    if (!ctx_.options->check_ordered_functions || !focus || !Unordered(*focus)) return Status::Ok();
    return Status::Invalid(what +
                           " depends on order, but the order of this collection is undefined");
  }

  Result<Collection> Binary(const Expr& e, const Collection& focus) {
    Name op{e.text};
    if (op == "and" || op == "or" || op == "xor" || op == "implies") {
      ASSIGN_OR_RETURN(Collection l, Eval(*e.children[0], focus));
      Status err;
      auto a = ToBool(l, &err);
      RETURN_IF_ERROR(err);
      if (op == "and" && a && !*a) return Collection{Item::Boolean(false)};
      if (op == "or" && a && *a) return Collection{Item::Boolean(true)};
      if (op == "implies" && a && !*a) return Collection{Item::Boolean(true)};
      ASSIGN_OR_RETURN(Collection r, Eval(*e.children[1], focus));
      auto b = ToBool(r, &err);
      RETURN_IF_ERROR(err);
      auto result = [](std::optional<bool> v) {
        return v ? Collection{Item::Boolean(*v)} : Collection{};
      };
      if (op == "and") {
        if (b && !*b) return result(false);
        if (a && b) return result(true);
        return result(std::nullopt);
      }
      if (op == "or") {
        if (b && *b) return result(true);
        if (a && b) return result(false);
        return result(std::nullopt);
      }
      if (op == "xor") {
        if (a && b) return result(*a != *b);
        return result(std::nullopt);
      }
      // implies: a is true or empty here
      if (b && *b) return result(true);
      if (a && b) return result(false);
      return result(std::nullopt);
    }
    ASSIGN_OR_RETURN(Collection l, Eval(*e.children[0], focus));
    // A literal operand is read from the table of literals rather than copied out of it.
    Collection r_owned;
    const Collection* r_ptr = nullptr;
    if (int slot = e.children[1]->literal_slot; slot >= 0) {
      r_ptr = &(*ctx_.literals)[static_cast<size_t>(slot)];
    } else {
      ASSIGN_OR_RETURN(r_owned, Eval(*e.children[1], focus));
      r_ptr = &r_owned;
    }
    const Collection& r = *r_ptr;
    if (op == "|") {
      Collection all = l;
      all.insert(all.end(), r.begin(), r.end());
      return Distinct(all);
    }
    if (op == "in" || op == "contains") {
      const Collection& single = op == "in" ? l : r;
      const Collection& set = op == "in" ? r : l;
      if (single.empty()) return Collection{};
      if (single.size() > 1) return Status::Invalid("'" + op + "' needs a single item");
      return Collection{Item::Boolean(Contains(set, single[0]))};
    }
    if (op == "=" || op == "!=") {
      if (l.empty() || r.empty()) return Collection{};
      std::optional<bool> eq = true;
      if (l.size() != r.size()) {
        eq = false;
      } else {
        for (size_t k = 0; k < l.size() && eq && *eq; ++k) eq = Equal(l[k], r[k]);
      }
      if (!eq) return Collection{};
      return Collection{Item::Boolean(op == "=" ? *eq : !*eq)};
    }
    if (op == "~" || op == "!~") {
      bool eq = l.size() == r.size();
      if (eq && !l.empty()) {
        // Order does not matter for equivalence of collections.
        std::vector<bool> used(r.size(), false);
        for (const Item& x : l) {
          bool found = false;
          for (size_t k = 0; k < r.size(); ++k) {
            if (!used[k] && Equivalent(x, r[k])) {
              used[k] = found = true;
              break;
            }
          }
          if (!found) {
            eq = false;
            break;
          }
        }
      }
      return Collection{Item::Boolean(op == "~" ? eq : !eq)};
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      if (l.empty() || r.empty()) return Collection{};
      if (l.size() > 1 || r.size() > 1) return Status::Invalid("comparison needs single values");
      ASSIGN_OR_RETURN(std::optional<int> c, Compare(l[0], r[0]));
      if (!c) return Collection{};
      bool v = op == "<" ? *c < 0 : op == ">" ? *c > 0 : op == "<=" ? *c <= 0 : *c >= 0;
      return Collection{Item::Boolean(v)};
    }
    if (op == "&") {
      if (l.size() > 1 || r.size() > 1) return Status::Invalid("'&' needs single strings");
      std::string a, b;
      if (auto s = Singleton(l)) a = s->string;
      if (auto s = Singleton(r)) b = s->string;
      return Collection{Item::String(a + b)};
    }
    // Arithmetic.
    if (l.empty() || r.empty()) return Collection{};
    auto x = Singleton(l), y = Singleton(r);
    if (!x || !y) return Status::Invalid("'" + op + "' needs single values");
    if (op == "+" && x->kind == Kind::kString && y->kind == Kind::kString) {
      return Collection{Item::String(x->string + y->string)};
    }
    if (IsTemporal(*x) && (y->kind == Kind::kQuantity) && (op == "+" || op == "-")) {
      return DateArithmetic(*x, *y, op == "-");
    }
    if (x->kind == Kind::kQuantity || y->kind == Kind::kQuantity) {
      auto qx = ToQuantity(*x), qy = ToQuantity(*y);
      if (qx && qy && (op == "*" || op == "/")) {
        // Units compose as UCUM terms; a second operand in a comparable unit is first expressed
        // in the first one's (2 'cm' * 3 'm' = 600 'cm2').
        auto ux = UcumCode(qx->string), uy = UcumCode(qy->string);
        if (!ux || !uy) return Collection{};
        double vx = qx->decimal, vy = qy->decimal;
        std::string unit_y = *uy;
        if (auto converted = InUnitOf(*qx, *qy)) {
          vy = *converted;
          unit_y = *ux;
        }
        auto wrap = [](const std::string& u) {
          return u.find_first_of("./") == std::string::npos ? u : "(" + u + ")";
        };
        if (op == "*") {
          std::string unit = *ux == unit_y ? wrap(*ux) + "2" : wrap(*ux) + "." + wrap(unit_y);
          if (*ux == "1") unit = unit_y;
          if (unit_y == "1") unit = *ux;
          return Collection{Item::Quantity(vx * vy, unit)};
        }
        if (vy == 0) return Collection{};
        std::string unit = *ux == unit_y ? "1" : wrap(*ux) + "/" + wrap(unit_y);
        if (unit_y == "1") unit = *ux;
        return Collection{Item::Quantity(vx / vy, unit)};
      }
      if (op == "*" && qx && IsNumber(*y))
        return Collection{Item::Quantity(qx->decimal * Num(*y), qx->string)};
      if (op == "*" && qy && IsNumber(*x))
        return Collection{Item::Quantity(qy->decimal * Num(*x), qy->string)};
      if (qx && qy && qx->string == qy->string && (op == "+" || op == "-")) {
        return Collection{Item::Quantity(
            op == "+" ? qx->decimal + qy->decimal : qx->decimal - qy->decimal, qx->string)};
      }
      return Collection{};
    }
    if (!IsNumber(*x) || !IsNumber(*y)) {
      return Status::Invalid("'" + op + "' cannot combine " + x->TypeName() + " and " +
                             y->TypeName());
    }
    bool ints = x->kind == Kind::kInteger && y->kind == Kind::kInteger;
    int scale = std::max(x->scale, y->scale);
    if (ints && (op == "+" || op == "-" || op == "*")) {
      auto r = CheckedInt(x->integer, y->integer, op[0]);
      return r ? Collection{Item::Integer(*r)} : Collection{};
    }
    if (op == "+") return Collection{Item::Decimal(Num(*x) + Num(*y), scale)};
    if (op == "-") return Collection{Item::Decimal(Num(*x) - Num(*y), scale)};
    if (op == "*")
      return Collection{Item::Decimal(Num(*x) * Num(*y), std::min(8, x->scale + y->scale))};
    if (op == "/") {
      if (Num(*y) == 0) return Collection{};
      return Collection{Item::Decimal(Num(*x) / Num(*y), 0)};
    }
    if (op == "div") {
      if (Num(*y) == 0) return Collection{};
      if (ints) {
        if (y->integer == -1) return IntegerFrom(-static_cast<double>(x->integer));
        return Collection{Item::Integer(x->integer / y->integer)};
      }
      return IntegerFrom(std::trunc(Num(*x) / Num(*y)));
    }
    if (op == "mod") {
      if (Num(*y) == 0) return Collection{};
      if (ints) return Collection{Item::Integer(y->integer == -1 ? 0 : x->integer % y->integer)};
      return Collection{Item::Decimal(std::fmod(Num(*x), Num(*y)), scale)};
    }
    return Status::Invalid("unknown operator " + op);
  }

  Result<Collection> DateArithmetic(const Item& t, const Item& q, bool subtract) {
    std::string unit = q.string;
    if (unit == "a" || unit == "mo") {
      return Status::Invalid("UCUM '" + unit + "' is not a calendar duration; use year or month");
    }
    if (!unit.empty() && unit.back() == 's' && unit != "ms" && unit != "s") unit.pop_back();
    // Calendar arithmetic uses whole units (7.7 days is 7 days), except milliseconds.
    double amount = subtract ? -q.decimal : q.decimal;
    if (unit != "millisecond" && unit != "ms") amount = std::trunc(amount);
    // Anything that leaves years 1-9999 is out of range: an empty result, computed safely.
    if (!std::isfinite(amount) || std::fabs(amount) > 4e11) return Collection{};
    Temporal r = t.temporal;
    auto whole = [&]() { return static_cast<int64_t>(std::trunc(amount)); };
    if (unit == "year") {
      if (std::fabs(amount) > 10000) return Collection{};
      r.year += static_cast<int>(whole());
    } else if (unit == "month") {
      if (std::fabs(amount) > 120000) return Collection{};
      int64_t m = r.year * 12 + (r.month - 1) + whole();
      r.year = static_cast<int>(m / 12);
      r.month = static_cast<int>(m % 12) + 1;
    } else if (unit == "week" || unit == "wk" || unit == "day" || unit == "d" || unit == "hour" ||
               unit == "h" || unit == "minute" || unit == "min" || unit == "second" ||
               unit == "s" || unit == "millisecond" || unit == "ms") {
      double secs = amount * (unit == "week" || unit == "wk"      ? 604800
                              : unit == "day" || unit == "d"      ? 86400
                              : unit == "hour" || unit == "h"     ? 3600
                              : unit == "minute" || unit == "min" ? 60
                              : unit == "second" || unit == "s"   ? 1
                                                                  : 0.001);
      if (t.kind == Kind::kDate && std::fabs(secs) < 86400) return Collection{t};
      if (std::fabs(secs) > 3.2e11) return Collection{};  // beyond 10,000 years
      SetFieldMillis(r, FieldMillis(r) + static_cast<int64_t>(std::llround(secs * 1000)));
    } else {
      return Status::Invalid("cannot add '" + q.string + "' to a date");
    }
    if (r.year < 1 || r.year > 9999) return Collection{};
    if (r.precision >= Temporal::kDay) r.day = std::min(r.day, DaysIn(r.year, r.month));
    return Collection{Item::Time(r, t.kind)};
  }

  // Evaluates an argument once per item of `focus`, with $this bound to the item.
  template <typename Fn>
  Status ForEach(const Collection& focus, const Expr& arg, Fn fn) {
    for (size_t k = 0; k < focus.size(); ++k) RETURN_IF_ERROR(ForOne(focus, k, arg, fn));
    return Status::Ok();
  }
  template <typename Fn>
  Status ForOne(const Collection& focus, size_t k, const Expr& arg, Fn& fn) {
    Context saved = ctx_;
    ctx_.this_item = &focus[k];
    ctx_.index = static_cast<int64_t>(k);
    Collection one{focus[k]};
    auto r = Eval(arg, one);
    ctx_ = saved;
    if (!r.ok()) return r.status();
    return fn(k, *r);
  }

  // where(name = 'text'), the commonest filter (status = 'final', use = 'official',
  // system = 'http://loinc.org'): the string literal, if `criterion` has that shape and
  // MemberEquals may answer it. Strict mode checks names, so it takes the general way.
  const Item* MemberEqualsLiteral(const Expr& criterion) const {
    if (ctx_.options->strict || criterion.kind != Expr::Kind::kBinary || criterion.text != "=" ||
        criterion.children[0]->kind != Expr::Kind::kIdentifier ||
        criterion.children[1]->literal_slot < 0) {
      return nullptr;
    }
    const Collection& lit =
        (*ctx_.literals)[static_cast<size_t>(criterion.children[1]->literal_slot)];
    return lit.size() == 1 && lit[0].kind == Kind::kString ? &lit[0] : nullptr;
  }

  // `name = literal` on one item, read in place: the member's JSON string against the literal,
  // without the collections and System values the general evaluation builds. It answers only
  // where the answer is plain (a single-valued element of a String-like primitive type, present
  // as a string, or absent) and asks for the general evaluation otherwise (kAsk): an array,
  // a choice, a date, an item that is not a resource or element.
  class MemberEquals {
   public:
    enum Answer { kTrue, kFalse, kAsk };
    MemberEquals(std::string_view name, size_t name_hash, std::string_view literal)
        : name_(name), name_hash_(name_hash), literal_(literal) {}

    Answer operator()(const Item& item) {
      if (!item.IsNode() || !item.type || !item.value || !item.value->is_object()) return kAsk;
      if (item.type != type_) {  // the items of a where() are mostly of one type
        type_ = item.type;
        const fhir::TypeDef::Property* p = item.type->FindProperty(name_, name_hash_);
        member_type_ = p && !p->element->choice && !p->element->is_array && p->type->IsPrimitive()
                           ? p->type
                           : nullptr;
      }
      if (!member_type_) return kAsk;
      const json::value* v = FindKey(item.value->get_object(), name_);
      // Absent, or only its `_name` extension: `=` is empty or false, and where() drops both.
      if (!v || v->is_null()) return kFalse;
      std::string_view text;
      if (!PrimitiveText(*member_type_, *v, text)) return kAsk;
      return text == literal_ ? kTrue : kFalse;
    }

   private:
    std::string_view name_;
    size_t name_hash_;
    std::string_view literal_;
    const fhir::TypeDef* type_ = nullptr;
    const fhir::TypeDef* member_type_ = nullptr;
  };

  Result<Collection> Arg(const Expr& e, size_t n, const Collection& focus) {
    return Eval(*e.children[n + 1], focus);
  }

 public:
  static std::string TypeArg(const Expr& arg) {
    if (arg.kind == Expr::Kind::kIdentifier) return arg.text;
    if (arg.kind == Expr::Kind::kMember && arg.children[0] &&
        arg.children[0]->kind == Expr::Kind::kIdentifier) {
      return arg.children[0]->text + "." + arg.text;
    }
    return arg.text;
  }

 private:
  Result<Collection> Function(const Expr& e, const Collection& outer_focus);

  // resolve(): a contained resource ("#id"), an entry of the Bundle being evaluated (by fullUrl,
  // or Type/id), or whatever the caller's hook finds.
  const json::value* Resolve(const std::string& ref) {
    const json::value* root = ctx_.resource->value;
    if (ref[0] == '#') {
      if (!root || !root->is_object()) return nullptr;
      const json::value* contained = FindKey(root->get_object(), "contained");
      if (!contained || !contained->is_array()) return nullptr;
      for (const auto& c : contained->get_array()) {
        if (c.is_object() && GetString(c.get_object(), "id") == std::string_view(ref).substr(1)) {
          return &c;
        }
      }
      return nullptr;
    }
    if (root && root->is_object() && GetString(root->get_object(), "resourceType") == "Bundle") {
      if (!bundle_refs_) IndexBundle(root->get_object());
      if (auto it = bundle_refs_->find(ref); it != bundle_refs_->end()) return it->second;
    }
    if (ctx_.options->resolve) return ctx_.options->resolve(ref);
    return nullptr;
  }

  // Built on the first resolve() within a Bundle, so each reference costs one hash lookup.
  void IndexBundle(const json::object& bundle) {
    bundle_refs_ = std::make_unique<std::unordered_map<std::string, const json::value*>>();
    const json::value* entries = FindKey(bundle, "entry");
    if (!entries || !entries->is_array()) return;
    for (const auto& en : entries->get_array()) {
      if (!en.is_object()) continue;
      const json::value* res = FindKey(en.get_object(), "resource");
      if (!res || !res->is_object()) continue;
      std::string_view full = GetString(en.get_object(), "fullUrl");
      std::string_view type = GetString(res->get_object(), "resourceType");
      std::string_view id = GetString(res->get_object(), "id");
      if (!full.empty()) bundle_refs_->emplace(std::string(full), res);
      if (!type.empty() && !id.empty()) {
        bundle_refs_->emplace(std::string(type) + "/" + std::string(id), res);
      }
    }
  }

  std::unique_ptr<std::unordered_map<std::string, const json::value*>> bundle_refs_;

  static constexpr uintptr_t kStackBudget = 2 << 20;
  Context ctx_;
  uintptr_t stack_base_ = 0;
};

// Decimal text with at least `scale` fractional digits (1.0 stays "1.0") and no float noise.
std::string DecimalText(double d, int scale = 0) {
  if (!std::isfinite(d)) return std::isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
  char buf[400];  // %.8f of the largest double needs 318 characters
  std::snprintf(buf, sizeof buf, "%.8f", d);
  std::string s = buf;
  size_t dot = s.find('.');
  if (dot == std::string::npos) return s;
  size_t keep = dot + 1 + static_cast<size_t>(std::min(scale, 8));
  size_t last = s.find_last_not_of('0');
  s.erase(std::max(last + 1, keep));
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::optional<std::string> ToStringValue(const Item& i0) {
  auto i = ToSystem(i0);
  if (!i) {
    if (auto q = ToQuantity(i0))
      i = q;
    else
      return std::nullopt;
  }
  switch (i->kind) {
    case Kind::kBoolean:
      return std::string(i->boolean ? "true" : "false");
    case Kind::kInteger:
      return std::to_string(i->integer);
    case Kind::kDecimal:
      return DecimalText(i->decimal, i->scale);
    case Kind::kString:
      return i->string;
    case Kind::kDate:
      return i->temporal.ToString(true, false);
    case Kind::kDateTime:
      return i->temporal.ToString(false, false);
    case Kind::kTime:
      return i->temporal.ToString(false, true);
    case Kind::kQuantity: {
      if (IsCalendarDuration(i->string)) {
        return DecimalText(i->decimal, i->scale) + " " + i->string;
      }
      return DecimalText(i->decimal, i->scale) + " '" + i->string + "'";
    }
    default:
      return std::nullopt;
  }
}

// A type name in is/as/ofType must name a FHIR or System type.
Status KnownType(const std::string& qualified) {
  std::string ns, name = qualified;
  if (size_t dot = qualified.find('.'); dot != std::string::npos) {
    ns = qualified.substr(0, dot);
    name = qualified.substr(dot + 1);
  }
  static const char* kSystem[] = {"Boolean", "Integer",  "Decimal", "String",
                                  "Date",    "DateTime", "Time",    "Quantity"};
  if (ns != "FHIR") {
    for (const char* t : kSystem)
      if (name == t) return Status::Ok();
  }
  if (ns != "System" && Model().FindType(name)) return Status::Ok();
  if (ns == "System") return Status::Ok();  // an unknown System type simply matches nothing
  return Status::Invalid("'" + qualified + "' is not a known type");
}

// encode/decode (base64, urlbase64, hex) and escape/unescape (html, json).
Result<std::string> Transcode(const std::string& f, const std::string& how, const std::string& s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  if (how == "base64" || how == "urlbase64") {
    if (f == "encode") return Base64Encode(s, how == "urlbase64");
    if (f == "decode") return Base64Decode(s, how == "urlbase64");
  }
  if (f == "encode" && how == "hex") {
    for (unsigned char c : s) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
    return out;
  }
  if (f == "decode" && how == "hex") {
    if (s.size() % 2) return Status::Invalid("odd-length hex");
    for (size_t k = 0; k < s.size(); k += 2) {
      if (!std::isxdigit(static_cast<unsigned char>(s[k])) ||
          !std::isxdigit(static_cast<unsigned char>(s[k + 1]))) {
        return Status::Invalid("not hex");
      }
      out.push_back(static_cast<char>(std::strtol(s.substr(k, 2).c_str(), nullptr, 16)));
    }
    return out;
  }
  if (f == "escape" && how == "html") {
    for (char c : s) {
      switch (c) {
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '&':
          out += "&amp;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out.push_back(c);
      }
    }
    return out;
  }
  if (f == "unescape" && how == "html") {
    static const std::pair<const char*, char> kEntities[] = {
        {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&#39;", '\''}};
    for (size_t k = 0; k < s.size();) {
      bool matched = false;
      for (auto& [ent, c] : kEntities) {
        if (s.compare(k, std::strlen(ent), ent) == 0) {
          out.push_back(c);
          k += std::strlen(ent);
          matched = true;
          break;
        }
      }
      if (!matched) out.push_back(s[k++]);
    }
    return out;
  }
  if (f == "escape" && how == "json") {
    for (char c : s) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }
  if (f == "unescape" && how == "json") {
    for (size_t k = 0; k < s.size(); ++k) {
      if (s[k] == '\\' && k + 1 < s.size()) ++k;
      out.push_back(s[k]);
    }
    return out;
  }
  return Status::Invalid(f + "() does not know '" + how + "'");
}

#include "fhirpath/functions.inc"

// The compile-time pass: precomputes literals and marks runs of path steps (see ast.h).
void Prepare(Expr& e, std::vector<Collection>& literals) {
  for (auto& c : e.children) {
    if (c) Prepare(*c, literals);
  }
  if (e.kind == Expr::Kind::kLiteral) {
    if (auto v = Evaluator::LiteralValue(e); v.ok()) {
      e.literal_slot = static_cast<int>(literals.size());
      literals.push_back(std::move(v).value());
    }
    return;
  }
  bool of_type = e.kind == Expr::Kind::kFunction && e.text == "ofType" && e.children.size() == 2 &&
                 e.children[0] && e.children[1];
  if (of_type) {
    std::string type = Evaluator::TypeArg(*e.children[1]);
    if (!KnownType(type).ok()) return;  // evaluation reports it
    e.type_name = type;
    e.bare_type = type.substr(type.find('.') == std::string::npos ? 0 : type.find('.') + 1);
    const fhir::TypeDef* t =
        type.rfind("System.", 0) == 0 ? nullptr : Model().FindType(e.bare_type);
    e.abstract_type = t && t->abstract;
    e.bare_type_def = t;
  }
  if (e.kind == Expr::Kind::kMember || e.kind == Expr::Kind::kIdentifier) {
    e.name_hash = fhir::FastIndex<fhir::TypeDef::Property>::Hash(e.text);
  }
  if (!of_type && e.kind != Expr::Kind::kMember) return;
  Expr& focus = *e.children[0];
  if (focus.steps_base) {
    e.steps = focus.steps;
    e.steps_base = focus.steps_base;
  } else if ((focus.kind == Expr::Kind::kMember ||
              (focus.kind == Expr::Kind::kFunction && !focus.bare_type.empty())) &&
             focus.children[0]) {
    e.steps = {&focus};
    e.steps_base = focus.children[0].get();
  } else {
    return;  // a single step: nothing to gain
  }
  e.steps.push_back(&e);
}

}  // namespace

CompiledExpression::CompiledExpression(std::unique_ptr<Expr> root) : root_(std::move(root)) {
  Prepare(*root_, literals_);
}

Result<std::shared_ptr<const CompiledExpression>> Compile(std::string_view text) {
  ASSIGN_OR_RETURN(auto root, Parse(text));
  return std::shared_ptr<const CompiledExpression>(
      std::make_shared<CompiledExpression>(std::move(root)));
}

Result<Collection> CompiledExpression::Evaluate(const json::value& resource,
                                                const EvalOptions& options) const {
  Item root;
  root.value = &resource;
  if (resource.is_object())
    root.type = Model().FindResource(GetString(resource.get_object(), "resourceType"));
  Context ctx{&root, &options, &literals_};
  Evaluator ev(ctx);
  return ev.Eval(*root_, Collection{root});
}

Result<Collection> CompiledExpression::Evaluate(const Item& context, const Item& resource,
                                                const EvalOptions& options) const {
  Context ctx{&resource, &options, &literals_};
  Evaluator ev(ctx);
  return ev.Eval(*root_, Collection{context});
}

std::string ItemToString(const Item& item) {
  if (auto s = ToStringValue(item)) {
    auto sys = ToSystem(item);
    if (sys && (sys->kind == Kind::kDate || sys->kind == Kind::kDateTime)) return "@" + *s;
    if (sys && sys->kind == Kind::kTime) return "@T" + *s;
    return *s;
  }
  if (item.IsNode() && item.value) return json::serialize(*item.value);
  return "";
}

}  // namespace taproot::fhirpath
