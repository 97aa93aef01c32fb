// FHIRPath values: an item is either a FHIR element read in place from the resource's JSON (no
// copy) or a System value (Boolean, Integer, Decimal, String, Date, DateTime, Time, Quantity)
// made during evaluation. A collection is a small vector of items.
//
// Items that point into a resource are valid while that resource's JSON lives. Plain values;
// thread-compatible.
#pragma once

#include <boost/container/small_vector.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fhir/model.h"

namespace taproot::fhirpath {

// A date, dateTime or time with the precision it was written with.
struct Temporal {
  enum Precision { kYear = 1, kMonth, kDay, kHour, kMinute, kSecond, kMillisecond };
  int year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0, millisecond = 0;
  int precision = kYear;
  std::optional<int> tz_minutes;  // offset from UTC, if given

  // Parses "2014-01-01", "2014-01-01T10:00:00.000+01:00" or (time_only) "10:00:00".
  static std::optional<Temporal> Parse(std::string_view text, bool time_only);
  std::string ToString(bool is_date, bool is_time) const;
};

struct Item {
  enum class Kind {
    kNode,
    kBoolean,
    kInteger,
    kDecimal,
    kString,
    kDate,
    kDateTime,
    kTime,
    kQuantity,
    kTypeInfo,  // the result of type(): string holds "namespace|name"
  };
  Kind kind = Kind::kNode;

  // kNode: the JSON value (null when only the `_name` extension object exists), the `_name`
  // sibling for primitives, and the FHIR type.
  const boost::json::value* value = nullptr;
  const boost::json::value* ext = nullptr;
  const fhir::TypeDef* type = nullptr;

  bool boolean = false;
  int64_t integer = 0;
  double decimal = 0;  // kDecimal and the value of kQuantity
  int scale = 0;       // digits after the decimal point a decimal was written or computed with
  std::string string;  // kString; the unit of kQuantity
  Temporal temporal;   // kDate, kDateTime, kTime

  static Item Boolean(bool b) {
    Item i;
    i.kind = Kind::kBoolean;
    i.boolean = b;
    return i;
  }
  static Item Integer(int64_t v) {
    Item i;
    i.kind = Kind::kInteger;
    i.integer = v;
    return i;
  }
  // Arithmetic has no negative zero: -0.0 becomes 0.0 (the boundary functions alone set a
  // signed zero afterwards).
  static Item Decimal(double v, int scale = 0) {
    Item i;
    i.kind = Kind::kDecimal;
    i.decimal = v == 0 ? 0.0 : v;
    i.scale = scale;
    return i;
  }
  static Item String(std::string s) {
    Item i;
    i.kind = Kind::kString;
    i.string = std::move(s);
    return i;
  }
  static Item Quantity(double v, std::string unit, int scale = 0) {
    Item i;
    i.kind = Kind::kQuantity;
    i.decimal = v;
    i.string = std::move(unit);
    i.scale = scale;
    return i;
  }
  static Item Time(Temporal t, Kind kind) {
    Item i;
    i.kind = kind;
    i.temporal = t;
    return i;
  }
  bool IsNode() const { return kind == Kind::kNode; }
  // The FHIR type name of a node ("HumanName", "string", "Patient"), or the System type name.
  std::string TypeName() const;
};

// Most intermediate results hold one item (a member of one element, a boolean, a literal), so
// one item lives inline and evaluating a step usually allocates nothing.
// Large ones (a Bundle's Observations) grow by doubling: with Boost's default of 60 % the moves
// of items on growth cost 4 % of a where() filter's instructions (callgrind, thirteenth session).
using Collection = boost::container::small_vector<
    Item, 1, void,
    boost::container::small_vector_options<
        boost::container::growth_factor<boost::container::growth_factor_100>>::type>;

}  // namespace taproot::fhirpath
