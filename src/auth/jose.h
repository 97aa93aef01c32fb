// JSON Web Keys (RFC 7517) and JSON Web Signatures in compact form (RFC 7515), on OpenSSL 3:
// what bearer tokens and signed client assertions need, and nothing else (no JWE, no HMAC).
//
// Only asymmetric algorithms exist here, each bound to one key type and, for EC, one curve, so
// a token can never pick how its own signature is checked: `alg: none` and HS256 are not
// algorithms this module knows, and an RSA key never verifies an ES256 signature (or the
// reverse). Which of the known algorithms a verifier accepts is its caller's allow-list.
//
// A Jwk owns an OpenSSL key (shared, immutable once built); Jwk and Jwks are values and may be
// shared by threads for verification. Signing uses the private half when the key has one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace taproot::auth {

enum class Alg { kRS256, kRS384, kRS512, kPS256, kES256, kES384, kES512 };

std::optional<Alg> ParseAlg(std::string_view name);
std::string_view AlgName(Alg alg);

class Jwk {
 public:
  // From a JWK object: kty RSA (n, e; d with p, q, dp, dq, qi for a private key) or EC with crv
  // P-256, P-384 or P-521 (x, y; d for a private key). `kid`, `alg` and `use` are kept.
  static Result<Jwk> FromJson(const json::object& jwk);
  // A new random P-256 key pair, with the RFC 7638 thumbprint as its kid.
  static Result<Jwk> GenerateP256();
  // From a PEM private or public key (PKCS#8, SubjectPublicKeyInfo, or traditional).
  static Result<Jwk> FromPem(std::string_view pem);

  // PEM of the private key (PKCS#8); fails for a public-only key.
  Result<std::string> PrivatePem() const;
  // The public half as a JWK object (with kid, alg and use when known).
  json::object PublicJson() const;
  // RFC 7638 thumbprint: base64url(SHA-256 of the required members in lexical order).
  std::string Thumbprint() const;

  const std::string& kid() const { return kid_; }
  void set_kid(std::string kid) { kid_ = std::move(kid); }
  const std::string& kty() const { return kty_; }  // "RSA" or "EC"
  bool has_private() const { return private_; }
  // The algorithm the JWK names, if any; a key that names one is used for nothing else.
  const std::optional<Alg>& alg() const { return alg_; }
  void set_alg(Alg alg) { alg_ = alg; }
  // Whether this key can check (or make) signatures of `alg`: the key type and curve fit, and
  // the JWK does not name another algorithm or a use other than "sig".
  bool Fits(Alg alg) const;
  EVP_PKEY* pkey() const { return key_.get(); }

 private:
  std::shared_ptr<EVP_PKEY> key_;
  std::string kty_, crv_, kid_, use_;
  std::optional<Alg> alg_;
  bool private_ = false;
};

// A JWK Set (RFC 7517 section 5). Keys it cannot use (other types, curves, "use": "enc") are
// skipped, not errors: identity providers publish keys for other purposes beside signing keys.
struct Jwks {
  std::vector<Jwk> keys;

  static Result<Jwks> Parse(std::string_view text);
  // Keys that fit `alg`, the one with `kid` only when a kid is given.
  std::vector<const Jwk*> Candidates(Alg alg, std::string_view kid) const;
  std::string ToJson() const;  // the public halves
};

// A JWS in compact serialisation, split and decoded but not yet trusted.
struct CompactJws {
  std::string signing_input;  // "header.payload" as received
  json::object header;
  std::string payload;  // decoded bytes
  std::string signature;
  Alg alg = Alg::kRS256;
  std::string kid;
};

// Splits and decodes a compact JWS. Fails on anything but three base64url parts, a JSON object
// header, an algorithm this module knows, and a header asking for features it does not
// implement ("crit", "b64": false, embedded keys "jwk"/"jku"/"x5u", which a token must never
// use to choose its own key).
Result<CompactJws> ParseCompactJws(std::string_view token);

// Checks the signature with `key` (which must fit the algorithm). Constant-time in the
// signature bytes as far as OpenSSL's verification is.
Status VerifyJws(const CompactJws& jws, const Jwk& key);

// Signs `payload` with a private key: the header gets "alg" (and "kid" when the key has one)
// beside the members given.
Result<std::string> SignJws(const Jwk& key, Alg alg, std::string_view payload,
                            json::object header = {});

// SHA-256 of `data` (32 raw bytes).
std::string Sha256(std::string_view data);
// `n` random bytes from OpenSSL's CSPRNG.
std::string RandomBytes(size_t n);

}  // namespace taproot::auth
