#include "auth_cmds.h"

#include <cstdio>

#include "audit/audit_log.h"
#include "auth/jose.h"
#include "auth/local_key.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/json.h"

namespace taproot::app {

int PrintToken(const TokenOptions& o) {
  if (o.user.empty()) {
    std::fprintf(stderr, "token: --user is required\n");
    return 2;
  }
  auto key = auth::LoadOrCreateLocalKey(o.data_dir);
  if (!key.ok()) {
    std::fprintf(stderr, "token: %s\n", key.status().ToString().c_str());
    return 1;
  }
  int64_t now = NowMicros() / 1'000'000;
  json::object claims{{"iss", auth::kLocalIssuer},
                      {"sub", o.user},
                      {"aud", o.audience.empty() ? auth::kLocalAudience : o.audience},
                      {"iat", now},
                      {"exp", now + o.expires_in},
                      {"jti", Base64Encode(auth::RandomBytes(12), true)}};
  if (o.user.find('/') != std::string::npos) claims["fhirUser"] = o.user;
  if (!o.name.empty()) claims["name"] = o.name;
  std::string scope = o.scope;
  if (!o.role.empty()) {
    claims["role"] = o.role;
    if (!o.org.empty()) claims["org"] = o.org;
    if (!o.urpid.empty()) claims["urpid"] = o.urpid;
    if (!o.activities.empty()) {
      json::array acts;
      for (const auto& a : o.activities) acts.push_back(json::string(a));
      claims["activities"] = acts;
    }
    if (scope.empty()) scope = "user/*.cruds";
  } else if (!o.patient.empty()) {
    if (scope.empty()) scope = "patient/*.rs";
  } else if (scope.empty()) {
    scope = "system/*.cruds";
  }
  if (!o.patient.empty()) claims["patient"] = o.patient;
  if (!o.purpose.empty()) claims["purpose_of_use"] = o.purpose;
  claims["scope"] = scope;
  auto token =
      auth::SignJws(*key, auth::Alg::kES256, SerializeJson(claims), json::object{{"typ", "JWT"}});
  if (!token.ok()) {
    std::fprintf(stderr, "token: %s\n", token.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}

int AuditVerify(const std::string& data_dir) {
  auto report = audit::AuditLog::Verify(data_dir);
  if (!report.ok()) {
    std::fprintf(stderr, "audit verify: %s\n", report.status().ToString().c_str());
    return 1;
  }
  if (!report->ok) {
    std::printf("BROKEN at record %lld: %s (%lld records verified before it)\n",
                static_cast<long long>(report->first_broken), report->problem.c_str(),
                static_cast<long long>(report->records));
    return 3;
  }
  std::printf("ok: %lld records, chain intact\n", static_cast<long long>(report->records));
  return 0;
}

int AuditHead(const std::string& data_dir) {
  auto head = audit::AuditLog::Head(data_dir);
  if (!head.ok()) {
    std::fprintf(stderr, "audit head: %s\n", head.status().ToString().c_str());
    return 1;
  }
  std::printf("%lld %s\n", static_cast<long long>(head->first), head->second.c_str());
  return 0;
}

}  // namespace taproot::app
