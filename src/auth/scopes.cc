#include "auth/scopes.h"

#include <cctype>

namespace taproot::auth {
namespace {

bool ParseLetters(std::string_view s, unsigned& out) {
  // v1
  if (s == "read") return out = kRead | kSearch, true;
  if (s == "write") return out = kCreate | kUpdate | kDelete, true;
  if (s == "*") return out = kCreate | kRead | kUpdate | kDelete | kSearch, true;
  // v2: letters in the order c r u d s, each at most once.
  static constexpr std::string_view kOrder = "cruds";
  static constexpr unsigned kBits[] = {kCreate, kRead, kUpdate, kDelete, kSearch};
  size_t pos = 0;
  out = 0;
  for (char c : s) {
    size_t at = kOrder.find(c, pos);
    if (at == std::string_view::npos) return false;
    out |= kBits[at];
    pos = at + 1;
  }
  return out != 0;
}

bool ValidType(std::string_view t) {
  if (t == "*") return true;
  if (t.empty() || !std::isupper(static_cast<unsigned char>(t[0]))) return false;
  for (char c : t)
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

ScopeSet ParseScopes(std::string_view text) {
  ScopeSet out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view s = text.substr(start, end - start);
    start = end + 1;
    if (s.empty()) continue;
    size_t slash = s.find('/');
    size_t dot = s.find('.', slash == std::string_view::npos ? 0 : slash);
    Scope scope;
    std::string_view ctx = slash == std::string_view::npos ? "" : s.substr(0, slash);
    bool ok = slash != std::string_view::npos && dot != std::string_view::npos &&
              s.find('?') == std::string_view::npos;
    if (ok) {
      if (ctx == "patient") {
        scope.context = Scope::Context::kPatient;
      } else if (ctx == "user") {
        scope.context = Scope::Context::kUser;
      } else if (ctx == "system") {
        scope.context = Scope::Context::kSystem;
      } else {
        ok = false;
      }
    }
    if (ok) {
      scope.type = std::string(s.substr(slash + 1, dot - slash - 1));
      ok = ValidType(scope.type) && ParseLetters(s.substr(dot + 1), scope.permissions);
    }
    if (ok) {
      out.scopes.push_back(std::move(scope));
    } else {
      out.ignored.emplace_back(s.substr(0, 200));
    }
  }
  return out;
}

bool ScopeSet::Allows(std::string_view type, Permission p) const {
  for (const Scope& s : scopes) {
    if ((s.permissions & p) && (s.type == "*" || s.type == type)) return true;
  }
  return false;
}

bool ScopeSet::OnlyPatientContext() const {
  if (scopes.empty()) return false;
  for (const Scope& s : scopes)
    if (s.context != Scope::Context::kPatient) return false;
  return true;
}

std::string ScopeSet::ToString() const {
  std::string out;
  for (const Scope& s : scopes) {
    if (!out.empty()) out += ' ';
    out += s.context == Scope::Context::kPatient ? "patient/"
           : s.context == Scope::Context::kUser  ? "user/"
                                                 : "system/";
    out += s.type + ".";
    static constexpr char kLetters[] = "cruds";
    for (int i = 0; i < 5; ++i)
      if (s.permissions & (1u << i)) out += kLetters[i];
  }
  return out;
}

}  // namespace taproot::auth
