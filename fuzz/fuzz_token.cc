// libFuzzer: bearer tokens and the key and policy formats around them. The input is tried as a
// compact JWS (then verified against a fixed key, and its claims read as the gateway reads
// them), as a JWK Set, as a SMART scope string and as a policy file. None may crash, hang or
// leak, and no input may verify: the fuzzer cannot sign with the key.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "auth/jose.h"
#include "auth/policy.h"
#include "auth/scopes.h"
#include "auth/token.h"

namespace {

taproot::auth::TokenVerifier& Verifier() {
  static taproot::auth::TokenVerifier* v = [] {
    taproot::auth::IssuerConfig c;
    c.issuer = "https://idp.example";
    c.audiences = {"urn:taproot:fhir"};
    c.keys.keys.push_back(*taproot::auth::Jwk::GenerateP256());
    c.algorithms = {taproot::auth::Alg::kES256, taproot::auth::Alg::kRS256,
                    taproot::auth::Alg::kPS256, taproot::auth::Alg::kES512};
    auto* verifier = new taproot::auth::TokenVerifier({c});
    (void)verifier->Init();
    return verifier;
  }();
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto jws = taproot::auth::ParseCompactJws(text);
  if (jws.ok()) {
    auto claims = taproot::ParseJson(jws->payload);
    if (claims.ok() && claims->is_object()) {
      (void)taproot::auth::RolesFromClaims(claims->get_object());
      (void)taproot::auth::ParseScopes(taproot::GetString(claims->get_object(), "scope"));
    }
  }
  if (Verifier().Verify(text, 1'800'000'000).ok()) std::abort();  // a forged token verified
  (void)taproot::auth::Jwks::Parse(text);
  (void)taproot::auth::ParseScopes(text);
  (void)taproot::auth::Policy::Parse(text, "fuzz.toml");
  return 0;
}
