// The access policy: which roles exist, which activities each role holds, and what each
// activity allows. Read from TOML (resources/policy/default.toml is compiled in; `taproot serve
// --policy FILE` replaces it). Immutable once loaded; shared by threads.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "auth/scopes.h"
#include "common/status.h"

namespace taproot::auth {

struct Activity {
  std::string name;
  std::set<std::string> types;  // "*" for all
  unsigned permissions = 0;     // Permission bits
  std::set<std::string> operations;
  std::set<std::string> capabilities;
  std::vector<std::string> codes;  // national activity codes that grant it
};

struct Role {
  std::string code;  // "R8000", "patient", "system", "operator"
  std::string name;
  std::vector<std::string> activities;
  bool relationship = false;
};

// What one role (plus any activities its token lists) may do, flattened for quick checks.
struct Grants {
  const Role* role = nullptr;
  std::vector<const Activity*> activities;

  bool Allows(std::string_view type, Permission p) const;
  bool AllowsOperation(std::string_view op) const;
  bool Has(std::string_view capability) const;
};

class Policy {
 public:
  static Result<Policy> Parse(std::string_view toml, std::string_view source_name);
  // The compiled-in default.
  static const Policy& Default();

  const Role* FindRole(std::string_view code) const;
  // The role's activities, plus the activities whose national codes appear in `activity_codes`.
  Grants GrantsFor(const Role& role, const std::vector<std::string>& activity_codes) const;
  const std::set<std::string>& not_for_patient() const { return not_for_patient_; }

 private:
  std::map<std::string, Activity, std::less<>> activities_;
  std::map<std::string, Role, std::less<>> roles_;
  std::set<std::string> not_for_patient_;
};

}  // namespace taproot::auth
