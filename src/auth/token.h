// Bearer tokens: checking an OAuth2 access token (a signed JWT) against the issuers this server
// trusts, and turning its claims into a Principal, the caller every later decision is about.
//
// Checks, in order, each failing with 401 and a reason that names the check but never echoes
// key material: the compact JWS shape; an algorithm on the issuer's allow-list (RS256 and
// ES256 unless configured); `iss` is a trusted issuer; the signature, with the issuer's key
// chosen by `kid`; `exp` (required) and `nbf`, with a small clock leeway; `aud` contains this
// server's audience.
//
// Claims read (beside the registered ones): `scope` (SMART, space separated), `patient` (the
// launch context), `fhirUser`, `role` and `org` (the selected national RBAC role code and its
// ODS organisation), or `nhsid_nrbac_roles` (CIS2 style: the user's role profiles, one of
// which the `NHSD-Session-URID` header selects), `activities`, `purpose_of_use`, `name`,
// `client_id` / `azp`, `jti`.
//
// Keys: a JWKS file, read at start, or a JWKS URL (https, or http), fetched on first use,
// refreshed every ten minutes and at once (at most every 30 s) when a token names a kid not yet
// seen, so keys rotate without a restart.
//
// A token that verified is remembered (by its exact text) for up to five minutes or until it
// expires, so a client's repeated requests pay for one signature check: that check is most of
// the cost of authentication (bench/RESULTS.md). A key withdrawn from a JWKS therefore stops
// working for tokens already seen within five minutes. TokenVerifier is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/jose.h"
#include "auth/scopes.h"
#include "common/status.h"

namespace taproot::auth {

struct IssuerConfig {
  std::string issuer;                  // the exact `iss`
  std::vector<std::string> audiences;  // the token's aud must hold one of these
  std::string jwks_file;               // one of jwks_file, jwks_url, keys
  std::string jwks_url;      // https (verified against the system's CAs, or jwks_ca_file) or http
  std::string jwks_ca_file;  // PEM CA certificates to trust for jwks_url instead of the system's
  Jwks keys;
  std::vector<Alg> algorithms = {Alg::kRS256, Alg::kES256};
};

// One role profile of a user (CIS2's nhsid_nrbac_roles entry).
struct RoleProfile {
  std::string urpid;         // person_roleid
  std::string role;          // "S8000:G8000:R8000" or "R8000"
  std::string organization;  // ODS code
  std::vector<std::string> activities;
};

struct Principal {
  std::string issuer, subject, client_id, token_id, name;
  std::string fhir_user;  // "Practitioner/123" or "Patient/9000000009"
  std::string patient;    // SMART launch context: the one patient a patient/ scope reaches
  std::vector<RoleProfile> roles;
  ScopeSet scopes;
  std::string purpose_of_use;  // from the token, if it names one
  int64_t expires_at = 0;      // seconds since the epoch
  int64_t not_before = 0;
};

class TokenVerifier {
 public:
  explicit TokenVerifier(std::vector<IssuerConfig> issuers, int64_t leeway_seconds = 60);
  ~TokenVerifier();

  // Loads JWKS files; fails if one cannot be read or holds no usable key.
  Status Init();
  // Verifies `token` at `now` (seconds since the epoch).
  Result<Principal> Verify(std::string_view token, int64_t now) const;

 private:
  struct Source;
  Result<std::vector<Jwk>> KeysFor(const Source& src, Alg alg, std::string_view kid,
                                   int64_t now) const;

  Result<Principal> VerifyUncached(std::string_view token, int64_t now) const;

  std::vector<std::unique_ptr<Source>> sources_;
  int64_t leeway_;
  struct Cached {
    Principal principal;
    int64_t nbf = 0;
    int64_t until = 0;  // seconds since the epoch
  };
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, Cached> cache_;  // guarded by cache_mu_
};

// Parses `nhsid_nrbac_roles`, `role`/`org`/`activities` claims into role profiles.
std::vector<RoleProfile> RolesFromClaims(const json::object& claims);

// The role code's last part: "S8000:G8000:R8000" -> "R8000".
std::string_view RoleCode(std::string_view full_role);

}  // namespace taproot::auth
