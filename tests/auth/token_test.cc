// Bearer token checks (each bad token is refused with the reason), SMART scopes and the access
// policy file.
#include "auth/token.h"

#include <gtest/gtest.h>

#include <mutex>

#include "auth/policy.h"
#include "auth/scopes.h"
#include "common/base64.h"
#include "http/server.h"

namespace taproot::auth {
namespace {

constexpr int64_t kNow = 1'800'000'000;

class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = *Jwk::GenerateP256();
    other_ = *Jwk::GenerateP256();
    IssuerConfig c;
    c.issuer = "https://idp.example";
    c.audiences = {"https://fhir.example/fhir"};
    c.keys.keys.push_back(*Jwk::FromJson(key_.PublicJson()));
    verifier_ = std::make_unique<TokenVerifier>(std::vector<IssuerConfig>{c});
    ASSERT_TRUE(verifier_->Init().ok());
  }
  json::object Claims() {
    return json::object{{"iss", "https://idp.example"},
                        {"sub", "u1"},
                        {"aud", "https://fhir.example/fhir"},
                        {"exp", kNow + 300},
                        {"scope", "user/Observation.rs"},
                        {"role", "S8000:G8000:R8000"},
                        {"org", "A81001"}};
  }
  std::string Sign(const json::object& claims, const Jwk* key = nullptr) {
    return *SignJws(key ? *key : key_, Alg::kES256, SerializeJson(claims));
  }
  Status Check(const std::string& token) { return verifier_->Verify(token, kNow).status(); }

  Jwk key_, other_;
  std::unique_ptr<TokenVerifier> verifier_;
};

TEST_F(TokenTest, AGoodTokenGivesThePrincipal) {
  auto p = verifier_->Verify(Sign(Claims()), kNow);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->subject, "u1");
  ASSERT_EQ(p->roles.size(), 1u);
  EXPECT_EQ(p->roles[0].role, "S8000:G8000:R8000");
  EXPECT_EQ(RoleCode(p->roles[0].role), "R8000");
  EXPECT_EQ(p->roles[0].organization, "A81001");
  EXPECT_TRUE(p->scopes.Allows("Observation", kSearch));
  EXPECT_FALSE(p->scopes.Allows("Observation", kCreate));
}

TEST_F(TokenTest, EachBadTokenIsRefusedWithItsReason) {
  struct Case {
    const char* name;
    std::function<std::string()> make;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"missing exp",
       [&] {
         auto c = Claims();
         c.erase("exp");
         return Sign(c);
       },
       "no expiry"},
      {"expired",
       [&] {
         auto c = Claims();
         c["exp"] = kNow - 3600;
         return Sign(c);
       },
       "expired"},
      {"not yet valid",
       [&] {
         auto c = Claims();
         c["nbf"] = kNow + 3600;
         return Sign(c);
       },
       "not valid yet"},
      {"wrong audience",
       [&] {
         auto c = Claims();
         c["aud"] = "https://other";
         return Sign(c);
       },
       "not meant for this server"},
      {"wrong issuer",
       [&] {
         auto c = Claims();
         c["iss"] = "https://evil";
         return Sign(c);
       },
       "issuer is not trusted"},
      {"signed by another key", [&] { return Sign(Claims(), &other_); }, "no key"},
      {"tampered claims",
       [&] {
         std::string t = Sign(Claims());
         auto c = Claims();
         c["scope"] = "user/*.cruds";  // scope escalation after signing
         std::string payload = Base64Encode(SerializeJson(c), true);
         while (payload.back() == '=') payload.pop_back();
         size_t d1 = t.find('.'), d2 = t.rfind('.');
         return t.substr(0, d1 + 1) + payload + t.substr(d2);
       },
       "signature does not verify"},
      {"alg none",
       [&] {
         std::string h = Base64Encode(R"({"alg":"none"})", true),
                     p = Base64Encode(SerializeJson(Claims()), true);
         while (h.back() == '=') h.pop_back();
         while (p.back() == '=') p.pop_back();
         return h + "." + p + ".";
       },
       "malformed"},
      {"no subject",
       [&] {
         auto c = Claims();
         c.erase("sub");
         return Sign(c);
       },
       "no subject"},
      {"garbage", [&] { return std::string("not-a-token"); }, "malformed"},
  };
  for (const Case& c : cases) {
    Status st = Check(c.make());
    EXPECT_EQ(st.code(), StatusCode::kUnauthorized) << c.name;
    EXPECT_NE(st.message().find(c.reason), std::string::npos) << c.name << ": " << st.message();
  }
}

TEST_F(TokenTest, ClockLeewayIsOneMinute) {
  auto c = Claims();
  c["exp"] = kNow - 30;
  EXPECT_TRUE(Check(Sign(c)).ok());
  c["exp"] = kNow - 90;
  EXPECT_FALSE(Check(Sign(c)).ok());
}

TEST_F(TokenTest, AlgorithmsOffTheIssuersListAreRefused) {
  IssuerConfig c;
  c.issuer = "https://idp.example";
  c.audiences = {"https://fhir.example/fhir"};
  c.keys.keys.push_back(key_);
  c.algorithms = {Alg::kRS256};
  TokenVerifier rs_only({c});
  ASSERT_TRUE(rs_only.Init().ok());
  auto st = rs_only.Verify(Sign(Claims()), kNow).status();
  EXPECT_NE(st.message().find("not accepted"), std::string::npos) << st.message();
}

// Keys from a JWKS URL rotate by kid: a token with an unknown kid makes the verifier fetch the
// set again (at most every 30 s), and a key withdrawn from the set stops verifying new tokens.
TEST(JwksUrlTest, KeysRotateByKid) {
  Jwk k1 = *Jwk::GenerateP256(), k2 = *Jwk::GenerateP256();
  std::mutex mu;
  std::string served;
  int fetches = 0;
  auto serve = [&](const Jwk& k) {
    Jwks set;
    set.keys.push_back(k);
    std::lock_guard lock(mu);
    served = set.ToJson();
  };
  serve(k1);
  http::ServerOptions so;
  so.port = 0;
  so.worker_threads = 2;
  http::Server server(so, [&](http::HttpRequest&) {
    http::HttpResponse r;
    std::lock_guard lock(mu);
    ++fetches;
    r.body = served;
    return r;
  });
  ASSERT_TRUE(server.Start().ok());
  IssuerConfig c;
  c.issuer = "https://idp.example";
  c.audiences = {"aud"};
  c.jwks_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/jwks";
  TokenVerifier v({c});
  ASSERT_TRUE(v.Init().ok());
  int n = 0;
  auto token = [&](const Jwk& k) {
    json::object claims{{"iss", "https://idp.example"},
                        {"sub", "s" + std::to_string(++n)},
                        {"aud", "aud"},
                        {"exp", kNow + 3000}};
    return *SignJws(k, Alg::kES256, SerializeJson(claims));
  };
  EXPECT_TRUE(v.Verify(token(k1), kNow).ok());
  EXPECT_EQ(fetches, 1);
  serve(k2);
  EXPECT_FALSE(v.Verify(token(k2), kNow + 5).ok());  // fetched 5 s ago: not again yet
  EXPECT_EQ(fetches, 1);
  EXPECT_TRUE(v.Verify(token(k2), kNow + 31).ok());  // unknown kid: fetched again
  EXPECT_EQ(fetches, 2);
  EXPECT_FALSE(v.Verify(token(k1), kNow + 32).ok());  // k1 withdrawn
  server.Stop(1);
}

TEST(ScopesTest, V2AndV1Forms) {
  ScopeSet s = ParseScopes(
      "patient/Observation.rs user/*.cruds openid launch/patient "
      "patient/Condition.rs?category=x system/Patient.read bogus/x.r "
      "user/Encounter.write user/Procedure.sr");
  EXPECT_TRUE(s.Allows("Observation", kRead));
  EXPECT_TRUE(s.Allows("Anything", kDelete));  // user/*.cruds
  EXPECT_TRUE(s.Allows("Encounter", kCreate));
  // Narrowed, unknown context and out-of-order letters grant nothing.
  ScopeSet narrow = ParseScopes("patient/Condition.rs?category=x bogus/x.r user/Procedure.sr");
  EXPECT_TRUE(narrow.scopes.empty());
  EXPECT_EQ(narrow.ignored.size(), 3u);
  ScopeSet v1 = ParseScopes("patient/*.read");
  EXPECT_TRUE(v1.Allows("Observation", kSearch));
  EXPECT_FALSE(v1.Allows("Observation", kUpdate));
  EXPECT_TRUE(v1.OnlyPatientContext());
}

TEST(PolicyTest, DefaultPolicyLoadsAndGrants) {
  const Policy& p = Policy::Default();
  const Role* gp = p.FindRole("R8000");
  ASSERT_NE(gp, nullptr);
  EXPECT_TRUE(gp->relationship);
  Grants g = p.GrantsFor(*gp, {});
  EXPECT_TRUE(g.Allows("Observation", kCreate));
  EXPECT_TRUE(g.Has("break-glass"));
  EXPECT_FALSE(g.Has("view-audit"));
  const Role* admin = p.FindRole("R8008");
  Grants a = p.GrantsFor(*admin, {});
  EXPECT_TRUE(a.Allows("Patient", kUpdate));
  EXPECT_FALSE(a.Allows("Observation", kRead));
  // A national activity code in the token adds its activity.
  Grants a2 = p.GrantsFor(*admin, {"B0401"});
  EXPECT_TRUE(a2.Allows("MedicationRequest", kRead));
}

TEST(PolicyTest, ErrorsNameTheirPlace) {
  auto bad = Policy::Parse("[roles.x\nname = 1", "p.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos) << bad.status().message();
  auto missing = Policy::Parse("[roles.x]\nactivities = [\"nope\"]\n", "p.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  auto letters =
      Policy::Parse("[activities.a]\npermissions = \"rx\"\n[roles.x]\nactivities=[\"a\"]\n", "p");
  EXPECT_FALSE(letters.ok());
}

}  // namespace
}  // namespace taproot::auth
