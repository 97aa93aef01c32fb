#include "auth/policy.h"

#include <toml++/toml.h>

#include <sstream>

#include "common/embedded.h"

namespace taproot::auth {
namespace {

unsigned ParsePermissions(std::string_view s, bool& ok) {
  unsigned out = 0;
  ok = true;
  for (char c : s) {
    switch (c) {
      case 'c':
        out |= kCreate;
        break;
      case 'r':
        out |= kRead;
        break;
      case 'u':
        out |= kUpdate;
        break;
      case 'd':
        out |= kDelete;
        break;
      case 's':
        out |= kSearch;
        break;
      default:
        ok = false;
    }
  }
  return out;
}

template <typename View, typename Fn>
Status ForStrings(const View& node, const std::string& where, Fn fn) {
  if (!node) return Status::Ok();
  const toml::array* arr = node.as_array();
  if (!arr) return Status::Invalid(where + " must be an array of strings");
  for (const toml::node& n : *arr) {
    auto v = n.value<std::string>();
    if (!v) return Status::Invalid(where + " must be an array of strings");
    fn(*v);
  }
  return Status::Ok();
}

}  // namespace

Result<Policy> Policy::Parse(std::string_view text, std::string_view source_name) {
  // toml++ reports errors by exception here (Debian builds it with exceptions): caught at
  // this edge and turned into a Status.
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "policy " << source_name << " line " << e.source().begin.line << ", column "
        << e.source().begin.column << ": " << e.description();
    return Status::Invalid(msg.str());
  }
  Policy out;
  static const std::set<std::string> kCapabilities = {
      "break-glass", "self-claim", "view-restricted", "view-audit", "acknowledge-alerts"};
  if (const toml::table* acts = root["activities"].as_table()) {
    for (const auto& [key, node] : *acts) {
      std::string name(key.str());
      std::string where = "activities." + name;
      const toml::table* t = node.as_table();
      if (!t) return Status::Invalid(where + " must be a table");
      Activity a;
      a.name = name;
      RETURN_IF_ERROR(ForStrings((*t)["types"], where + ".types",
                                 [&](const std::string& s) { a.types.insert(s); }));
      RETURN_IF_ERROR(ForStrings((*t)["operations"], where + ".operations",
                                 [&](const std::string& s) { a.operations.insert(s); }));
      RETURN_IF_ERROR(ForStrings((*t)["codes"], where + ".codes",
                                 [&](const std::string& s) { a.codes.push_back(s); }));
      std::string unknown;
      RETURN_IF_ERROR(
          ForStrings((*t)["capabilities"], where + ".capabilities", [&](const std::string& s) {
            if (!kCapabilities.count(s)) unknown = s;
            a.capabilities.insert(s);
          }));
      if (!unknown.empty()) {
        return Status::Invalid(where + ": unknown capability '" + unknown + "'");
      }
      if (auto p = (*t)["permissions"].value<std::string>()) {
        bool ok = false;
        a.permissions = ParsePermissions(*p, ok);
        if (!ok) return Status::Invalid(where + ".permissions takes the letters c r u d s");
      }
      out.activities_[name] = std::move(a);
    }
  }
  const toml::table* roles = root["roles"].as_table();
  if (!roles || roles->empty()) return Status::Invalid("the policy defines no roles");
  for (const auto& [key, node] : *roles) {
    std::string code(key.str());
    std::string where = "roles." + code;
    const toml::table* t = node.as_table();
    if (!t) return Status::Invalid(where + " must be a table");
    Role r;
    r.code = code;
    r.name = (*t)["name"].value_or(std::string());
    r.relationship = (*t)["relationship"].value_or(false);
    std::string missing;
    RETURN_IF_ERROR(
        ForStrings((*t)["activities"], where + ".activities", [&](const std::string& s) {
          if (!out.activities_.count(s)) missing = s;
          r.activities.push_back(s);
        }));
    if (!missing.empty()) {
      return Status::Invalid(where + " names activity '" + missing + "', which is not defined");
    }
    out.roles_[code] = std::move(r);
  }
  RETURN_IF_ERROR(ForStrings(root["labels"]["not_for_patient"], "labels.not_for_patient",
                             [&](const std::string& s) { out.not_for_patient_.insert(s); }));
  return out;
}

const Policy& Policy::Default() {
  static const Policy* policy = [] {
    auto p = Parse(EmbeddedFile("policy/default.toml"), "default.toml");
    if (!p.ok()) std::abort();  // compiled in and tested: cannot fail at run time
    return new Policy(std::move(p).value());
  }();
  return *policy;
}

const Role* Policy::FindRole(std::string_view code) const {
  auto it = roles_.find(code);
  return it == roles_.end() ? nullptr : &it->second;
}

Grants Policy::GrantsFor(const Role& role, const std::vector<std::string>& activity_codes) const {
  Grants g;
  g.role = &role;
  for (const std::string& a : role.activities) g.activities.push_back(&activities_.at(a));
  for (const auto& [name, a] : activities_) {
    for (const std::string& code : a.codes) {
      for (const std::string& have : activity_codes) {
        if (code == have) g.activities.push_back(&a);
      }
    }
  }
  return g;
}

bool Grants::Allows(std::string_view type, Permission p) const {
  for (const Activity* a : activities) {
    if ((a->permissions & p) && (a->types.count("*") || a->types.count(std::string(type)))) {
      return true;
    }
  }
  return false;
}

bool Grants::AllowsOperation(std::string_view op) const {
  for (const Activity* a : activities)
    if (a->operations.count(std::string(op))) return true;
  return false;
}

bool Grants::Has(std::string_view capability) const {
  for (const Activity* a : activities)
    if (a->capabilities.count(std::string(capability))) return true;
  return false;
}

}  // namespace taproot::auth
