// JWS and JWK against the published examples of RFC 7515 (appendix A.2, RS256, and A.3,
// ES256) and RFC 7520 (section 4.3, ES512, and its key's RFC 7638 thumbprint), and the ways a
// token may try to choose how it is checked.
#include "auth/jose.h"

#include <gtest/gtest.h>

#include "common/base64.h"

namespace taproot::auth {
namespace {

// RFC 7515 A.2.1: the RSA key (public half) and the complete JWS.
constexpr const char* kRsaN =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4"
    "QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdb"
    "BYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-"
    "DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
constexpr const char* kPayload =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q";
constexpr const char* kRs256Jws =
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"
    "O8W2Fp5jujG"
    "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6"
    "LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
// RFC 7515 A.3.1: the EC P-256 key (public half) and the complete JWS.
constexpr const char* kEcX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr const char* kEcY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
constexpr const char* kEs256Jws =
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    "."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

// RFC 7520 (JOSE cookbook) 3.1/3.2: the P-521 key; 4.3: the ES512 JWS over its payload.
constexpr const char* kBilboX =
    "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
constexpr const char* kBilboY =
    "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";
constexpr const char* kBilboD =
    "AAhRON2r9cqXX1hg-RoI6R1tX5p2rUAYdmpHZoC1XNM56KtscrX6zbKipQrCW9CGZH3T4ubpnoTKLDYJ_fF3_rJt";
constexpr const char* kRfc7520Es512 =
    "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9."
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250by"
    "B0"
    "aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW"
    "91"
    "IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4."
    "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-"
    "JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu"
    "_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2";

Jwk RsaKey() {
  auto k = Jwk::FromJson(json::object{{"kty", "RSA"}, {"n", kRsaN}, {"e", "AQAB"}});
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return *k;
}
Jwk EcKey() {
  auto k = Jwk::FromJson(json::object{{"kty", "EC"}, {"crv", "P-256"}, {"x", kEcX}, {"y", kEcY}});
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return *k;
}

TEST(JoseTest, Rfc7515A2Rs256Verifies) {
  auto jws = ParseCompactJws(kRs256Jws);
  ASSERT_TRUE(jws.ok()) << jws.status().ToString();
  EXPECT_EQ(jws->alg, Alg::kRS256);
  EXPECT_NE(jws->payload.find("\"iss\":\"joe\""), std::string::npos);
  EXPECT_TRUE(VerifyJws(*jws, RsaKey()).ok());
}

TEST(JoseTest, Rfc7515A3Es256Verifies) {
  auto jws = ParseCompactJws(kEs256Jws);
  ASSERT_TRUE(jws.ok());
  EXPECT_EQ(jws->alg, Alg::kES256);
  EXPECT_TRUE(VerifyJws(*jws, EcKey()).ok());
}

TEST(JoseTest, Rfc7520Section43Es512Verifies) {
  json::object jwk{{"kty", "EC"},  {"kid", "bilbo.baggins@hobbiton.example"},
                   {"use", "sig"}, {"crv", "P-521"},
                   {"x", kBilboX}, {"y", kBilboY}};
  auto key = Jwk::FromJson(jwk);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  auto jws = ParseCompactJws(kRfc7520Es512);
  ASSERT_TRUE(jws.ok()) << jws.status().ToString();
  EXPECT_EQ(jws->alg, Alg::kES512);
  EXPECT_EQ(jws->kid, "bilbo.baggins@hobbiton.example");
  EXPECT_EQ(jws->payload.substr(0, 8), "It\xe2\x80\x99s a");
  EXPECT_TRUE(VerifyJws(*jws, *key).ok());
  // The RFC 7638 thumbprint of the same key (SHA-256 of its required members in order).
  EXPECT_EQ(key->Thumbprint(), "dHri3SADZkrush5HU_50AoRhcKFryN-PI6jPBtPL55M");
  // Its private half (3.2) signs what the public half verifies.
  jwk["d"] = kBilboD;
  auto priv = Jwk::FromJson(jwk);
  ASSERT_TRUE(priv.ok()) << priv.status().ToString();
  auto mine = SignJws(*priv, Alg::kES512, "Frodo");
  ASSERT_TRUE(mine.ok());
  EXPECT_TRUE(VerifyJws(*ParseCompactJws(*mine), *key).ok());
}

TEST(JoseTest, TamperedPayloadOrSignatureFails) {
  // Change one payload character: the signature no longer covers it.
  std::string token = kEs256Jws;
  size_t at = token.find('.') + 5;
  token[at] = token[at] == 'A' ? 'B' : 'A';
  auto jws = ParseCompactJws(token);
  ASSERT_TRUE(jws.ok());
  EXPECT_FALSE(VerifyJws(*jws, EcKey()).ok());
  std::string sig = kRs256Jws;
  sig[sig.size() - 3] = sig[sig.size() - 3] == 'R' ? 'S' : 'R';
  auto jws2 = ParseCompactJws(sig);
  ASSERT_TRUE(jws2.ok());
  EXPECT_FALSE(VerifyJws(*jws2, RsaKey()).ok());
}

TEST(JoseTest, KeyOfTheWrongTypeNeverVerifies) {
  auto es = ParseCompactJws(kEs256Jws);
  auto rs = ParseCompactJws(kRs256Jws);
  EXPECT_FALSE(VerifyJws(*es, RsaKey()).ok());
  EXPECT_FALSE(VerifyJws(*rs, EcKey()).ok());
  // The same RS256 signature relabelled RS384 (an algorithm the key could do) fails too.
  CompactJws relabelled = *rs;
  relabelled.alg = Alg::kRS384;
  EXPECT_FALSE(VerifyJws(relabelled, RsaKey()).ok());
}

TEST(JoseTest, NoneAndHmacAreNotAlgorithms) {
  std::string none_header = Base64Encode(R"({"alg":"none"})", true);
  while (none_header.back() == '=') none_header.pop_back();
  EXPECT_FALSE(ParseCompactJws(none_header + "." + kPayload + ".").ok());
  std::string hs = Base64Encode(R"({"alg":"HS256"})", true);
  while (hs.back() == '=') hs.pop_back();
  EXPECT_FALSE(ParseCompactJws(hs + "." + kPayload + ".c2ln").ok());
}

TEST(JoseTest, HeadersThatChooseTheirOwnKeyAreRefused) {
  for (const char* h : {R"({"alg":"ES256","jwk":{"kty":"EC"}})", R"({"alg":"ES256","jku":"x"})",
                        R"({"alg":"ES256","crit":["exp"]})", R"({"alg":"ES256","b64":false})"}) {
    std::string enc = Base64Encode(h, true);
    while (enc.back() == '=') enc.pop_back();
    EXPECT_FALSE(ParseCompactJws(enc + "." + kPayload + ".c2ln").ok()) << h;
  }
}

TEST(JoseTest, MalformedCompactFormsAreRefused) {
  for (const char* t : {"", "a.b", "a.b.c.d", "e30.e30", "!!!.e30.e30", "e30=.e30.e30"}) {
    EXPECT_FALSE(ParseCompactJws(t).ok()) << t;
  }
}

TEST(JoseTest, GeneratedKeySignsAndVerifiesAndRoundTripsThroughPem) {
  auto key = Jwk::GenerateP256();
  ASSERT_TRUE(key.ok());
  auto token = SignJws(*key, Alg::kES256, R"({"sub":"x"})");
  ASSERT_TRUE(token.ok());
  auto jws = ParseCompactJws(*token);
  ASSERT_TRUE(jws.ok());
  EXPECT_EQ(jws->kid, key->kid());
  auto pem = key->PrivatePem();
  ASSERT_TRUE(pem.ok());
  auto again = Jwk::FromPem(*pem);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Thumbprint(), key->Thumbprint());
  auto pub = Jwk::FromJson(key->PublicJson());
  ASSERT_TRUE(pub.ok());
  EXPECT_FALSE(pub->has_private());
  EXPECT_TRUE(VerifyJws(*jws, *pub).ok());
  EXPECT_FALSE(SignJws(*pub, Alg::kES256, "x").ok());
}

TEST(JoseTest, BadKeysAreRefused) {
  // A point not on the curve.
  EXPECT_FALSE(
      Jwk::FromJson(json::object{{"kty", "EC"}, {"crv", "P-256"}, {"x", kEcX}, {"y", kEcX}}).ok());
  // A 1024-bit RSA modulus (RFC 7518 requires 2048).
  std::string small(128, '\xc1');
  std::string n = Base64Encode(small, true);
  while (n.back() == '=') n.pop_back();
  EXPECT_FALSE(Jwk::FromJson(json::object{{"kty", "RSA"}, {"n", n}, {"e", "AQAB"}}).ok());
  EXPECT_FALSE(Jwk::FromJson(json::object{{"kty", "oct"}, {"k", "c2VjcmV0"}}).ok());
  // A JWKS skips keys it cannot use instead of failing.
  auto set =
      Jwks::Parse(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","x":")" +
                  std::string(kEcX) + R"(","y":")" + kEcY + R"(","kid":"k1"}]})");
  ASSERT_TRUE(set.ok());
  ASSERT_EQ(set->keys.size(), 1u);
  EXPECT_EQ(set->Candidates(Alg::kES256, "k1").size(), 1u);
  EXPECT_TRUE(set->Candidates(Alg::kES256, "other").empty());
  EXPECT_TRUE(set->Candidates(Alg::kRS256, "").empty());
}

}  // namespace
}  // namespace taproot::auth
