#include "fhir/ucum.h"

#include <cctype>
#include <cmath>
#include <unordered_map>

namespace taproot::fhir::ucum {
namespace {

enum Dim { kM, kS, kG, kRad, kK, kC, kCd };

struct Atom {
  double factor;
  std::array<int, 7> dims;
  bool metric;  // takes prefixes
  double offset = 0;
  const char* arbitrary = nullptr;
};

constexpr std::array<int, 7> D(int m, int s, int g, int rad = 0, int k = 0, int c = 0, int cd = 0) {
  return {m, s, g, rad, k, c, cd};
}
constexpr std::array<int, 7> kNone{};

const std::unordered_map<std::string_view, Atom>& Atoms() {
  static const std::unordered_map<std::string_view, Atom> kAtoms = {
      // base units
      {"m", {1, D(1, 0, 0), true}},
      {"s", {1, D(0, 1, 0), true}},
      {"g", {1, D(0, 0, 1), true}},
      {"rad", {1, D(0, 0, 0, 1), true}},
      {"K", {1, D(0, 0, 0, 0, 1), true}},
      {"C", {1, D(0, 0, 0, 0, 0, 1), true}},
      {"cd", {1, D(0, 0, 0, 0, 0, 0, 1), true}},
      // dimensionless
      {"1", {1, kNone, false}},
      {"10*", {10, kNone, false}},
      {"10^", {10, kNone, false}},
      {"%", {0.01, kNone, false}},
      {"[ppth]", {1e-3, kNone, false}},
      {"[ppm]", {1e-6, kNone, false}},
      {"[ppb]", {1e-9, kNone, false}},
      {"[pi]", {M_PI, kNone, false}},
      {"mol", {6.0221367e23, kNone, true}},
      {"eq", {6.0221367e23, kNone, true}},
      {"osm", {6.0221367e23, kNone, true}},
      {"sr", {1, D(0, 0, 0, 2), true}},
      {"deg", {M_PI / 180, D(0, 0, 0, 1), false}},
      // time
      {"min", {60, D(0, 1, 0), false}},
      {"h", {3600, D(0, 1, 0), false}},
      {"d", {86400, D(0, 1, 0), false}},
      {"wk", {604800, D(0, 1, 0), false}},
      {"a", {31557600, D(0, 1, 0), false}},  // Julian year
      {"mo", {2629800, D(0, 1, 0), false}},  // a twelfth of the Julian year
      {"a_j", {31557600, D(0, 1, 0), false}},
      {"mo_j", {2629800, D(0, 1, 0), false}},
      {"a_g", {31556952, D(0, 1, 0), false}},
      {"mo_g", {2629746, D(0, 1, 0), false}},
      {"Hz", {1, D(0, -1, 0), true}},
      // mechanics and electricity (grams, not kilograms, are UCUM's base mass)
      {"N", {1000, D(1, -2, 1), true}},
      {"Pa", {1000, D(-1, -2, 1), true}},
      {"J", {1000, D(2, -2, 1), true}},
      {"W", {1000, D(2, -3, 1), true}},
      {"A", {1, D(0, -1, 0, 0, 0, 1), true}},
      {"V", {1000, D(2, -2, 1, 0, 0, -1), true}},
      {"Ohm", {1000, D(2, -1, 1, 0, 0, -2), true}},
      {"F", {1e-3, D(-2, 2, -1, 0, 0, 2), true}},
      {"S", {1e-3, D(-2, 1, -1, 0, 0, 2), true}},
      {"Wb", {1000, D(2, -1, 1, 0, 0, -1), true}},
      {"T", {1000, D(0, -1, 1, 0, 0, -1), true}},
      {"H", {1000, D(2, 0, 1, 0, 0, -2), true}},
      {"Gy", {1, D(2, -2, 0), true}},
      {"Sv", {1, D(2, -2, 0), true}},
      {"Bq", {1, D(0, -1, 0), true}},
      {"kat", {6.0221367e23, D(0, -1, 0), true}},
      {"U", {6.0221367e23 / 60e6, D(0, -1, 0), true}},  // umol/min
      {"lm", {1, D(0, 0, 0, 2, 0, 0, 1), true}},
      {"lx", {1, D(-2, 0, 0, 2, 0, 0, 1), true}},
      {"cal", {4184, D(2, -2, 1), true}},
      {"[Cal]", {4184000, D(2, -2, 1), false}},
      {"eV", {1.60217733e-16, D(2, -2, 1), true}},
      {"bar", {1e8, D(-1, -2, 1), true}},
      {"atm", {101325000, D(-1, -2, 1), false}},
      {"m[Hg]", {133322000, D(-1, -2, 1), true}},
      {"m[H2O]", {9806650, D(-1, -2, 1), true}},
      {"[in_i'Hg]", {3386388.6, D(-1, -2, 1), false}},
      // volume, area, length, mass
      {"L", {1e-3, D(3, 0, 0), true}},
      {"l", {1e-3, D(3, 0, 0), true}},
      {"ar", {100, D(2, 0, 0), true}},
      {"Ao", {1e-10, D(1, 0, 0), false}},
      {"t", {1e6, D(0, 0, 1), true}},
      {"u", {1.6605402e-24, D(0, 0, 1), true}},
      {"[in_i]", {0.0254, D(1, 0, 0), false}},
      {"[ft_i]", {0.3048, D(1, 0, 0), false}},
      {"[yd_i]", {0.9144, D(1, 0, 0), false}},
      {"[mi_i]", {1609.344, D(1, 0, 0), false}},
      {"[nmi_i]", {1852, D(1, 0, 0), false}},
      {"[lb_av]", {453.59237, D(0, 0, 1), false}},
      {"[oz_av]", {28.349523125, D(0, 0, 1), false}},
      {"[gr]", {0.06479891, D(0, 0, 1), false}},
      {"[stone_av]", {6350.29318, D(0, 0, 1), false}},
      {"[gal_us]", {3.785411784e-3, D(3, 0, 0), false}},
      {"[qt_us]", {9.46352946e-4, D(3, 0, 0), false}},
      {"[pt_us]", {4.73176473e-4, D(3, 0, 0), false}},
      {"[foz_us]", {2.95735295625e-5, D(3, 0, 0), false}},
      {"[tbs_us]", {1.478676478125e-5, D(3, 0, 0), false}},
      {"[tsp_us]", {4.92892159375e-6, D(3, 0, 0), false}},
      {"[cup_us]", {2.365882365e-4, D(3, 0, 0), false}},
      {"[gal_br]", {4.54609e-3, D(3, 0, 0), false}},
      {"[pt_br]", {5.6826125e-4, D(3, 0, 0), false}},
      {"[foz_br]", {2.84130625e-5, D(3, 0, 0), false}},
      // temperature: offsets apply only when the unit stands alone
      {"Cel", {1, D(0, 0, 0, 0, 1), false, 273.15}},
      {"[degF]", {5.0 / 9.0, D(0, 0, 0, 0, 1), false, 459.67 * 5.0 / 9.0}},
      {"[degR]", {5.0 / 9.0, D(0, 0, 0, 0, 1), false}},
      // arbitrary units: comparable only with themselves
      {"[iU]", {1, kNone, true, 0, "[iU]"}},
      {"[IU]", {1, kNone, true, 0, "[iU]"}},
      {"[arb'U]", {1, kNone, false, 0, "[arb'U]"}},
      {"[USP'U]", {1, kNone, false, 0, "[USP'U]"}},
      {"[CFU]", {1, kNone, false, 0, "[CFU]"}},
      {"[pH]", {1, kNone, false, 0, "[pH]"}},
      {"[drp]", {1, kNone, false, 0, "[drp]"}},
      {"[HPF]", {1, kNone, false, 0, "[HPF]"}},
      {"[LPF]", {1, kNone, false, 0, "[LPF]"}},
  };
  return kAtoms;
}

const std::pair<const char*, double> kPrefixes[] = {
    {"da", 1e1}, {"Y", 1e24},  {"Z", 1e21},  {"E", 1e18},  {"P", 1e15},  {"T", 1e12}, {"G", 1e9},
    {"M", 1e6},  {"k", 1e3},   {"h", 1e2},   {"d", 1e-1},  {"c", 1e-2},  {"m", 1e-3}, {"u", 1e-6},
    {"n", 1e-9}, {"p", 1e-12}, {"f", 1e-15}, {"a", 1e-18}, {"z", 1e-21}, {"y", 1e-24}};

void Scale(Canonical& c, const Canonical& by, int power) {
  c.factor *= std::pow(by.factor, power);
  for (size_t i = 0; i < c.dims.size(); ++i) c.dims[i] += by.dims[i] * power;
  for (const auto& [name, e] : by.arbitrary) {
    if ((c.arbitrary[name] += e * power) == 0) c.arbitrary.erase(name);
  }
}

// A recursive-descent parser over the UCUM grammar: term := component (('.'|'/') component)*,
// component := annotatable annotation? | annotation | factor | '(' term ')'.
class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Result<Canonical> Run() {
    if (s_.empty()) return Status::Invalid("empty unit");
    Canonical c;
    if (s_[0] == '/') {  // "/min": a leading division
      ++pos_;
      ASSIGN_OR_RETURN(Canonical t, Term());
      Scale(c, t, -1);
    } else {
      ASSIGN_OR_RETURN(c, Term());
    }
    if (pos_ != s_.size()) return Error("unexpected character");
    return c;
  }

 private:
  Status Error(const std::string& what) const {
    return Status::Invalid("UCUM unit '" + std::string(s_) + "': " + what + " at position " +
                           std::to_string(pos_));
  }

  Result<Canonical> Term() {
    ASSIGN_OR_RETURN(Canonical c, Component());
    while (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == '/')) {
      bool divide = s_[pos_++] == '/';
      ASSIGN_OR_RETURN(Canonical next, Component());
      Scale(c, next, divide ? -1 : 1);
    }
    return c;
  }

  Result<Canonical> Component() {
    if (++depth_ > 32) return Error("nested too deeply");
    Canonical c;
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      ASSIGN_OR_RETURN(c, Term());
      if (pos_ >= s_.size() || s_[pos_] != ')') return Error("missing ')'");
      ++pos_;
    } else if (pos_ < s_.size() && s_[pos_] == '{') {
      RETURN_IF_ERROR(Annotation());
      --depth_;
      return c;  // an annotation alone is the unity
    } else if (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])) &&
               s_.substr(pos_, 3) != "10*" && s_.substr(pos_, 3) != "10^") {
      size_t start = pos_;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      c.factor = std::stod(std::string(s_.substr(start, pos_ - start)));
    } else {
      ASSIGN_OR_RETURN(c, Annotatable());
    }
    if (pos_ < s_.size() && s_[pos_] == '{') RETURN_IF_ERROR(Annotation());
    --depth_;
    return c;
  }

  Status Annotation() {
    size_t close = s_.find('}', pos_);
    if (close == std::string_view::npos) return Error("unclosed annotation");
    pos_ = close + 1;
    return Status::Ok();
  }

  // A (prefixed) atom with an optional integer exponent: "mg", "cm2", "s-1", "10*3".
  Result<Canonical> Annotatable() {
    size_t start = pos_;
    bool power_of_ten = s_.substr(pos_, 3) == "10*" || s_.substr(pos_, 3) == "10^";
    if (power_of_ten) pos_ += 3;  // "10*3": the exponent follows
    // The symbol runs to the next operator or exponent; brackets may contain anything but ']'.
    while (!power_of_ten && pos_ < s_.size()) {
      char ch = s_[pos_];
      if (ch == '[') {
        size_t close = s_.find(']', pos_);
        if (close == std::string_view::npos) return Error("unclosed '['");
        pos_ = close + 1;
        continue;
      }
      if (ch == '.' || ch == '/' || ch == '(' || ch == ')' || ch == '{') break;
      if (std::isdigit(static_cast<unsigned char>(ch)) || ch == '-' || ch == '+') break;
      ++pos_;
    }
    std::string_view symbol = s_.substr(start, pos_ - start);
    int exponent = 1;
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+' ||
                             std::isdigit(static_cast<unsigned char>(s_[pos_])))) {
      size_t e0 = pos_;
      if (s_[pos_] == '-' || s_[pos_] == '+') ++pos_;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      std::string text(s_.substr(e0, pos_ - e0));
      if (text == "-" || text == "+" || text.size() > 4) return Error("bad exponent");
      exponent = std::stoi(text);
    } else if (symbol == "10*" || symbol == "10^") {
      return Error("a power of ten needs its exponent");
    }
    ASSIGN_OR_RETURN(Canonical atom, Symbol(symbol));
    Canonical c;
    Scale(c, atom, exponent);
    c.offset = exponent == 1 ? atom.offset : 0;
    return c;
  }

  Result<Canonical> Symbol(std::string_view symbol) {
    if (symbol.empty()) return Error("missing unit");
    const auto& atoms = Atoms();
    auto make = [](const Atom& a, double prefix) {
      Canonical c;
      c.factor = a.factor * prefix;
      c.dims = a.dims;
      c.offset = a.offset;
      if (a.arbitrary) c.arbitrary[a.arbitrary] = 1;
      return c;
    };
    if (auto it = atoms.find(symbol); it != atoms.end()) return make(it->second, 1);
    for (const auto& [prefix, value] : kPrefixes) {
      std::string_view p(prefix);
      if (symbol.size() > p.size() && symbol.substr(0, p.size()) == p) {
        auto it = atoms.find(symbol.substr(p.size()));
        if (it != atoms.end() && it->second.metric) return make(it->second, value);
      }
    }
    return Status::Invalid("UCUM unit '" + std::string(s_) + "': unknown unit '" +
                           std::string(symbol) + "'");
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<Canonical> Parse(std::string_view unit) {
  ASSIGN_OR_RETURN(Canonical c, Parser(unit).Run());
  // An offset only means something for a temperature unit standing alone.
  bool alone = c.dims == std::array<int, 7>{0, 0, 0, 0, 1, 0, 0} && c.arbitrary.empty();
  if (!alone) c.offset = 0;
  return c;
}

std::optional<double> Convert(double value, std::string_view from, std::string_view to) {
  if (from == to) return value;
  auto a = Parse(from), b = Parse(to);
  if (!a.ok() || !b.ok() || !a->SameDimension(*b)) return std::nullopt;
  double base = value * a->factor + a->offset;
  return (base - b->offset) / b->factor;
}

std::string Canonical::UnitText() const {
  static const char* kNames[] = {"m", "s", "g", "rad", "K", "C", "cd"};
  std::string out;
  auto add = [&](const std::string& name, int e) {
    if (e == 0) return;
    if (!out.empty()) out += '.';
    out += name;
    if (e != 1) out += std::to_string(e);
  };
  for (size_t i = 0; i < dims.size(); ++i) add(kNames[i], dims[i]);
  for (const auto& [name, e] : arbitrary) add(name, e);
  return out.empty() ? "1" : out;
}

}  // namespace taproot::fhir::ucum
