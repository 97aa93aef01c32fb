// A built-in OAuth2 token endpoint (RFC 6749 section 4.4, client credentials) for deployments
// without an identity provider, authenticating clients by signed JWT assertions (RFC 7523,
// `private_key_jwt`), as NHS application-restricted APIs do. Access tokens it issues are signed
// by the store's local key, so `taproot serve` trusts them like `taproot token`'s.
//
// Clients are registered in a TOML file (`taproot serve --clients FILE`):
//   [[client]]
//   client_id = "gp-system-1"
//   jwks_file = "keys/gp-system-1.jwks.json"     # or jwks_url = "http://..."
//   scopes = ["system/Patient.rs", "system/Observation.rs"]   # the most it may be given
//   role = "system"            # policy role of its tokens (default "system")
//   org = "A81001"             # optional ODS code
//
// Assertion checks: a registered client; iss and sub both equal to the client id; aud is the
// token endpoint URL; signed by one of the client's keys (RS256, RS384, ES256, ES384); exp at
// most five minutes ahead; a jti not seen before (replays are refused until the assertion
// expires). Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "auth/jose.h"
#include "auth/token.h"

namespace taproot::auth {

struct ClientRegistration {
  std::string client_id;
  std::string jwks_file, jwks_url;
  std::vector<std::string> scopes;
  std::string role = "system";
  std::string org;
};

Result<std::vector<ClientRegistration>> LoadClients(const std::string& toml_path);

struct TokenResponse {
  int status = 200;
  std::string body;  // JSON: the token, or {"error": ..., "error_description": ...}
};

class TokenEndpoint {
 public:
  TokenEndpoint(std::vector<ClientRegistration> clients, Jwk signing_key,
                int64_t lifetime_seconds = 600);
  Status Init();
  // `form`: the application/x-www-form-urlencoded body; `endpoint_urls`: the URLs this endpoint
  // answers at (an assertion's aud must be one of them).
  TokenResponse Handle(std::string_view form, const std::vector<std::string>& endpoint_urls,
                       int64_t now);

 private:
  std::vector<ClientRegistration> clients_;
  Jwk key_;
  int64_t lifetime_;
  std::map<std::string, std::unique_ptr<TokenVerifier>> verifiers_;  // by client id, per aud set
  std::mutex mu_;
  std::map<std::string, int64_t> seen_jti_;  // guarded by mu_: "client\njti" -> exp
};

}  // namespace taproot::auth
