// SMART App Launch scopes (v2 "patient/Observation.rs", and the v1 forms "user/*.read",
// "patient/Observation.write"): parsing and the question every request asks, "does this set of
// scopes allow interaction X on type T?".
//
// v2 letters: c create; r read, vread and instance history; u update and patch; d delete;
// s search (type and system) and type and system history. v1 "read" is "rs", "write" is "cud",
// "*" is all five. A scope narrowed by search parameters ("patient/Observation.rs?category=x")
// cannot be enforced by type and interaction alone, so it grants nothing (it is kept and
// reported as ignored), rather than more than it says.
//
// Values; thread-compatible.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace taproot::auth {

// The letters of a v2 scope, as bits.
enum Permission : unsigned {
  kCreate = 1,
  kRead = 2,
  kUpdate = 4,
  kDelete = 8,
  kSearch = 16,
};

struct Scope {
  enum class Context { kPatient, kUser, kSystem };
  Context context = Context::kUser;
  std::string type;  // a resource type or "*"
  unsigned permissions = 0;
};

struct ScopeSet {
  std::vector<Scope> scopes;
  std::vector<std::string> ignored;  // granted nothing: openid, launch/patient, narrowed scopes
  bool Allows(std::string_view type, Permission p) const;
  // Allows through a patient/ scope only (the caller is then confined to one compartment).
  bool OnlyPatientContext() const;
  std::string ToString() const;
};

// Parses a space-separated scope string. Malformed resource scopes are ignored, not errors:
// tokens from a shared identity provider carry scopes meant for other servers.
ScopeSet ParseScopes(std::string_view text);

}  // namespace taproot::auth
