#include "auth/jose.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>

#include "common/base64.h"

namespace taproot::auth {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter>;

struct AlgInfo {
  Alg alg;
  std::string_view name;
  const char* kty;  // "RSA" or "EC"
  const char* crv;  // EC only
  int field_bytes;  // EC only: size of r and s
  bool pss;
};

constexpr AlgInfo kAlgs[] = {
    {Alg::kRS256, "RS256", "RSA", "", 0, false},
    {Alg::kRS384, "RS384", "RSA", "", 0, false},
    {Alg::kRS512, "RS512", "RSA", "", 0, false},
    {Alg::kPS256, "PS256", "RSA", "", 0, true},
    {Alg::kES256, "ES256", "EC", "P-256", 32, false},
    {Alg::kES384, "ES384", "EC", "P-384", 48, false},
    {Alg::kES512, "ES512", "EC", "P-521", 66, false},
};

const AlgInfo& Info(Alg alg) {
  for (const AlgInfo& a : kAlgs)
    if (a.alg == alg) return a;
  return kAlgs[0];
}

const EVP_MD* Digest(Alg alg) {
  switch (alg) {
    case Alg::kRS384:
    case Alg::kES384:
      return EVP_sha384();
    case Alg::kRS512:
    case Alg::kES512:
      return EVP_sha512();
    default:
      return EVP_sha256();
  }
}

struct Curve {
  std::string_view jwk_name;
  const char* openssl_name;
  int field_bytes;
};
constexpr Curve kCurves[] = {
    {"P-256", "prime256v1", 32}, {"P-384", "secp384r1", 48}, {"P-521", "secp521r1", 66}};

const Curve* FindCurve(std::string_view name) {
  for (const Curve& c : kCurves)
    if (c.jwk_name == name || c.openssl_name == name) return &c;
  return nullptr;
}

// base64url without padding or whitespace, as JOSE requires (RFC 7515 section 2).
Result<std::string> B64Url(std::string_view text, std::string_view what) {
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return Status::Invalid(std::string(what) + " is not base64url");
  }
  if (text.size() % 4 == 1) return Status::Invalid(std::string(what) + " is not base64url");
  return Base64Decode(text, /*url_safe=*/true);
}

std::string ToB64Url(std::string_view bytes) {
  std::string s = Base64Encode(bytes, /*url_safe=*/true);
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

Result<Owned<BIGNUM>> Bignum(const json::object& jwk, std::string_view member, bool required) {
  const json::value* v = FindKey(jwk, member);
  if (!v) {
    if (required) return Status::Invalid("JWK member '" + std::string(member) + "' is missing");
    return Owned<BIGNUM>();
  }
  if (!v->is_string()) {
    return Status::Invalid("JWK member '" + std::string(member) + "' is not a string");
  }
  ASSIGN_OR_RETURN(std::string bytes, B64Url(v->get_string(), "JWK member " + std::string(member)));
  if (bytes.empty()) return Status::Invalid("JWK member '" + std::string(member) + "' is empty");
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                         static_cast<int>(bytes.size()), nullptr);
  if (!bn) return Status::Internal("out of memory");
  return Owned<BIGNUM>(bn);
}

std::string BnBytes(const BIGNUM* bn, int pad_to = 0) {
  int n = BN_num_bytes(bn);
  int size = std::max(n, pad_to);
  std::string out(static_cast<size_t>(size), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), size);
  return out;
}

std::string BnParam(EVP_PKEY* key, const char* name, int pad_to = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) return {};
  Owned<BIGNUM> owned(bn);
  return BnBytes(bn, pad_to);
}

Status CheckKey(EVP_PKEY* key, bool has_private) {
  Owned<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) return Status::Internal("out of memory");
  int ok = has_private ? EVP_PKEY_pairwise_check(ctx.get()) : EVP_PKEY_public_check(ctx.get());
  if (ok != 1) return Status::Invalid("the JWK is not a valid key");
  return Status::Ok();
}

Result<Owned<EVP_PKEY>> FromParams(const char* type, OSSL_PARAM_BLD* bld, bool has_private) {
  Owned<OSSL_PARAM> params(OSSL_PARAM_BLD_to_param(bld));
  Owned<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return Status::Internal("OpenSSL could not build a key");
  }
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &key, has_private ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                        params.get()) != 1 ||
      !key) {
    return Status::Invalid("the JWK is not a valid key");
  }
  Owned<EVP_PKEY> owned(key);
  RETURN_IF_ERROR(CheckKey(key, has_private));
  return owned;
}

// Fills kty_/crv_ from an OpenSSL key; RSA keys below 2048 bits are refused (RFC 7518 3.3).
Status Describe(EVP_PKEY* key, std::string& kty, std::string& crv) {
  if (EVP_PKEY_is_a(key, "RSA")) {
    if (EVP_PKEY_get_bits(key) < 2048) {
      return Status::Invalid("RSA keys must have at least 2048 bits (RFC 7518 section 3.3)");
    }
    kty = "RSA";
    return Status::Ok();
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64];
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &len) != 1) {
      return Status::Invalid("the EC key has no named curve");
    }
    const Curve* c = FindCurve(std::string_view(group, len));
    if (!c) return Status::Invalid("EC curve '" + std::string(group, len) + "' is not supported");
    kty = "EC";
    crv = std::string(c->jwk_name);
    return Status::Ok();
  }
  return Status::Invalid("only RSA and EC keys are supported");
}

}  // namespace

std::optional<Alg> ParseAlg(std::string_view name) {
  for (const AlgInfo& a : kAlgs)
    if (a.name == name) return a.alg;
  return std::nullopt;
}

std::string_view AlgName(Alg alg) { return Info(alg).name; }

Result<Jwk> Jwk::FromJson(const json::object& jwk) {
  Jwk out;
  std::string kty(GetString(jwk, "kty"));
  out.kid_ = std::string(GetString(jwk, "kid"));
  out.use_ = std::string(GetString(jwk, "use"));
  if (const json::value* alg = FindKey(jwk, "alg")) {
    if (!alg->is_string()) return Status::Invalid("JWK member 'alg' is not a string");
    out.alg_ = ParseAlg(alg->get_string());
    if (!out.alg_) {
      return Status::Invalid("JWK algorithm '" + std::string(alg->get_string()) +
                             "' is not supported");
    }
  }
  Owned<OSSL_PARAM_BLD> bld(OSSL_PARAM_BLD_new());
  if (!bld) return Status::Internal("out of memory");
  std::vector<Owned<BIGNUM>> keep;  // the builder refers to these until the key is built
  if (kty == "RSA") {
    ASSIGN_OR_RETURN(auto n, Bignum(jwk, "n", true));
    ASSIGN_OR_RETURN(auto e, Bignum(jwk, "e", true));
    ASSIGN_OR_RETURN(auto d, Bignum(jwk, "d", false));
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
    keep.push_back(std::move(n));
    keep.push_back(std::move(e));
    if (d) {
      // OpenSSL 3.0 signs only with the CRT parameters present.
      static constexpr std::pair<const char*, const char*> kCrt[] = {
          {"p", OSSL_PKEY_PARAM_RSA_FACTOR1},
          {"q", OSSL_PKEY_PARAM_RSA_FACTOR2},
          {"dp", OSSL_PKEY_PARAM_RSA_EXPONENT1},
          {"dq", OSSL_PKEY_PARAM_RSA_EXPONENT2},
          {"qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1}};
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_D, d.get());
      keep.push_back(std::move(d));
      for (const auto& [member, param] : kCrt) {
        ASSIGN_OR_RETURN(auto bn, Bignum(jwk, member, true));
        OSSL_PARAM_BLD_push_BN(bld.get(), param, bn.get());
        keep.push_back(std::move(bn));
      }
      out.private_ = true;
    }
    ASSIGN_OR_RETURN(out.key_, FromParams("RSA", bld.get(), out.private_));
  } else if (kty == "EC") {
    std::string crv(GetString(jwk, "crv"));
    const Curve* curve = FindCurve(crv);
    if (!curve || curve->jwk_name != crv) {
      return Status::Invalid("EC curve '" + crv + "' is not supported (P-256, P-384, P-521)");
    }
    ASSIGN_OR_RETURN(std::string x, B64Url(GetString(jwk, "x"), "JWK member x"));
    ASSIGN_OR_RETURN(std::string y, B64Url(GetString(jwk, "y"), "JWK member y"));
    if (static_cast<int>(x.size()) != curve->field_bytes ||
        static_cast<int>(y.size()) != curve->field_bytes) {
      return Status::Invalid("EC coordinates must be " + std::to_string(curve->field_bytes) +
                             " bytes for " + crv);
    }
    std::string point = "\x04" + x + y;
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve->openssl_name, 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                     point.size());
    ASSIGN_OR_RETURN(auto d, Bignum(jwk, "d", false));
    if (d) {
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get());
      keep.push_back(std::move(d));
      out.private_ = true;
    }
    ASSIGN_OR_RETURN(out.key_, FromParams("EC", bld.get(), out.private_));
    out.crv_ = crv;
  } else {
    return Status::Invalid("JWK key type '" + kty + "' is not supported (RSA, EC)");
  }
  RETURN_IF_ERROR(Describe(out.key_.get(), out.kty_, out.crv_));
  return out;
}

Result<Jwk> Jwk::GenerateP256() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) return Status::Internal("OpenSSL could not generate a P-256 key");
  Jwk out;
  out.key_.reset(key, EVP_PKEY_free);
  out.private_ = true;
  RETURN_IF_ERROR(Describe(key, out.kty_, out.crv_));
  out.alg_ = Alg::kES256;
  out.use_ = "sig";
  out.kid_ = out.Thumbprint();
  return out;
}

Result<Jwk> Jwk::FromPem(std::string_view pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::Internal("out of memory");
  Jwk out;
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key) {
    out.private_ = true;
  } else {
    BIO_reset(bio.get());
    key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  }
  if (!key) return Status::Invalid("not a PEM private or public key");
  out.key_.reset(key, EVP_PKEY_free);
  RETURN_IF_ERROR(Describe(key, out.kty_, out.crv_));
  out.kid_ = out.Thumbprint();
  return out;
}

Result<std::string> Jwk::PrivatePem() const {
  if (!private_) return Status::Invalid("the key has no private half");
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Status::Internal("OpenSSL could not write the key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

json::object Jwk::PublicJson() const {
  json::object o;
  o["kty"] = kty_;
  if (kty_ == "RSA") {
    o["n"] = ToB64Url(BnParam(key_.get(), OSSL_PKEY_PARAM_RSA_N));
    o["e"] = ToB64Url(BnParam(key_.get(), OSSL_PKEY_PARAM_RSA_E));
  } else {
    int size = FindCurve(crv_)->field_bytes;
    o["crv"] = crv_;
    o["x"] = ToB64Url(BnParam(key_.get(), OSSL_PKEY_PARAM_EC_PUB_X, size));
    o["y"] = ToB64Url(BnParam(key_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, size));
  }
  if (!kid_.empty()) o["kid"] = kid_;
  if (alg_) o["alg"] = AlgName(*alg_);
  o["use"] = use_.empty() ? "sig" : use_;
  return o;
}

std::string Jwk::Thumbprint() const {
  // RFC 7638 section 3.2: the required members only, in lexical order, no whitespace.
  json::object pub = PublicJson();
  std::string canonical;
  if (kty_ == "RSA") {
    canonical = "{\"e\":\"" + std::string(pub["e"].get_string()) + "\",\"kty\":\"RSA\",\"n\":\"" +
                std::string(pub["n"].get_string()) + "\"}";
  } else {
    canonical = "{\"crv\":\"" + crv_ + "\",\"kty\":\"EC\",\"x\":\"" +
                std::string(pub["x"].get_string()) + "\",\"y\":\"" +
                std::string(pub["y"].get_string()) + "\"}";
  }
  return ToB64Url(Sha256(canonical));
}

bool Jwk::Fits(Alg alg) const {
  const AlgInfo& info = Info(alg);
  if (kty_ != info.kty) return false;
  if (kty_ == "EC" && crv_ != info.crv) return false;
  if (alg_ && *alg_ != alg) return false;
  if (!use_.empty() && use_ != "sig") return false;
  return true;
}

Result<Jwks> Jwks::Parse(std::string_view text) {
  ASSIGN_OR_RETURN(json::value doc, ParseJson(text));
  if (!doc.is_object()) return Status::Invalid("a JWK Set must be a JSON object");
  const json::value* keys = FindKey(doc.get_object(), "keys");
  if (!keys || !keys->is_array()) return Status::Invalid("a JWK Set needs a 'keys' array");
  Jwks out;
  for (const json::value& k : keys->get_array()) {
    if (!k.is_object()) continue;
    auto key = Jwk::FromJson(k.get_object());
    if (key.ok()) out.keys.push_back(std::move(key).value());
  }
  return out;
}

std::vector<const Jwk*> Jwks::Candidates(Alg alg, std::string_view kid) const {
  std::vector<const Jwk*> out;
  for (const Jwk& k : keys) {
    if (!k.Fits(alg)) continue;
    if (!kid.empty() && k.kid() != kid) continue;
    out.push_back(&k);
  }
  return out;
}

std::string Jwks::ToJson() const {
  json::array arr;
  for (const Jwk& k : keys) arr.push_back(k.PublicJson());
  return SerializeJson(json::object{{"keys", std::move(arr)}});
}

Result<CompactJws> ParseCompactJws(std::string_view token) {
  // Bounded: a token is a few kilobytes at most, and it is decoded before anything is trusted.
  if (token.size() > 16 * 1024) return Status::Invalid("the token is longer than 16 KiB");
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Status::Invalid("the token is not a compact JWS (three parts separated by dots)");
  }
  CompactJws out;
  out.signing_input = std::string(token.substr(0, dot2));
  ASSIGN_OR_RETURN(std::string header, B64Url(token.substr(0, dot1), "the token header"));
  ASSIGN_OR_RETURN(out.payload,
                   B64Url(token.substr(dot1 + 1, dot2 - dot1 - 1), "the token payload"));
  ASSIGN_OR_RETURN(out.signature, B64Url(token.substr(dot2 + 1), "the token signature"));
  auto parsed = ParseJson(header);
  if (!parsed.ok() || !parsed->is_object()) {
    return Status::Invalid("the token header is not a JSON object");
  }
  out.header = std::move(parsed->get_object());
  const json::value* alg = FindKey(out.header, "alg");
  if (!alg || !alg->is_string()) return Status::Invalid("the token header has no 'alg'");
  auto known = ParseAlg(alg->get_string());
  if (!known) {
    return Status::Invalid("the token's algorithm '" +
                           std::string(alg->get_string()).substr(0, 16) + "' is not accepted");
  }
  out.alg = *known;
  for (std::string_view refused : {"crit", "jwk", "jku", "x5u", "x5c"}) {
    if (FindKey(out.header, refused)) {
      return Status::Invalid("the token header member '" + std::string(refused) +
                             "' is not accepted");
    }
  }
  if (const json::value* b64 = FindKey(out.header, "b64");
      b64 && !(b64->is_bool() && b64->get_bool())) {
    return Status::Invalid("unencoded payloads (b64: false) are not accepted");
  }
  out.kid = std::string(GetString(out.header, "kid"));
  return out;
}

Status VerifyJws(const CompactJws& jws, const Jwk& key) {
  static const Status kBad = Status::Make(StatusCode::kUnauthorized,
                                          "the token signature does "
                                          "not verify");
  if (!key.Fits(jws.alg)) return kBad;
  const AlgInfo& info = Info(jws.alg);
  std::string sig = jws.signature;
  if (info.field_bytes) {
    // JWS carries r || s at fixed width (RFC 7518 3.4); OpenSSL wants DER.
    if (static_cast<int>(sig.size()) != 2 * info.field_bytes) return kBad;
    auto* bytes = reinterpret_cast<const unsigned char*>(sig.data());
    BIGNUM* r = BN_bin2bn(bytes, info.field_bytes, nullptr);
    BIGNUM* s = BN_bin2bn(bytes + info.field_bytes, info.field_bytes, nullptr);
    Owned<ECDSA_SIG> es(ECDSA_SIG_new());
    if (!r || !s || !es || ECDSA_SIG_set0(es.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return Status::Internal("out of memory");
    }
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(es.get(), &der);
    if (len <= 0) return kBad;
    sig.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
  }
  Owned<EVP_MD_CTX> md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!md || EVP_DigestVerifyInit(md.get(), &pctx, Digest(jws.alg), nullptr, key.pkey()) != 1) {
    return kBad;
  }
  if (info.pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                   EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return kBad;
  }
  int ok = EVP_DigestVerify(
      md.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
      reinterpret_cast<const unsigned char*>(jws.signing_input.data()), jws.signing_input.size());
  return ok == 1 ? Status::Ok() : kBad;
}

Result<std::string> SignJws(const Jwk& key, Alg alg, std::string_view payload,
                            json::object header) {
  if (!key.has_private()) return Status::Invalid("signing needs a private key");
  if (!key.Fits(alg)) {
    return Status::Invalid("the key cannot sign " + std::string(AlgName(alg)));
  }
  header["alg"] = AlgName(alg);
  if (!key.kid().empty() && !header.contains("kid")) header["kid"] = key.kid();
  std::string input = ToB64Url(SerializeJson(header)) + "." + ToB64Url(payload);
  const AlgInfo& info = Info(alg);
  Owned<EVP_MD_CTX> md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!md || EVP_DigestSignInit(md.get(), &pctx, Digest(alg), nullptr, key.pkey()) != 1) {
    return Status::Internal("OpenSSL could not start signing");
  }
  if (info.pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(md.get(), nullptr, &len, in, input.size()) != 1) {
    return Status::Internal("OpenSSL could not sign");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     input.size()) != 1) {
    return Status::Internal("OpenSSL could not sign");
  }
  sig.resize(len);
  if (info.field_bytes) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    Owned<ECDSA_SIG> es(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
    if (!es) return Status::Internal("OpenSSL made an unreadable signature");
    sig = BnBytes(ECDSA_SIG_get0_r(es.get()), info.field_bytes) +
          BnBytes(ECDSA_SIG_get0_s(es.get()), info.field_bytes);
  }
  return input + "." + ToB64Url(sig);
}

std::string Sha256(std::string_view data) {
  unsigned char out[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // The CSPRNG failing is unrecoverable for anything that needs secrets.
    std::abort();
  }
  return out;
}

}  // namespace taproot::auth
