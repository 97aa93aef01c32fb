#include "auth/token.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "common/clock.h"
#include "common/files.h"
#include "common/log.h"
#include "http/client.h"

namespace taproot::auth {
namespace {

Status Unauthorized(std::string why) {
  return Status::Make(StatusCode::kUnauthorized, std::move(why), {}, "login");
}

constexpr int64_t kRefreshSeconds = 600;
constexpr int64_t kUnknownKidRetrySeconds = 30;

Result<std::string> FetchUrl(const std::string& url, const std::string& ca_file) {
  auto u = boost::urls::parse_uri(url);
  if (!u) return Status::Invalid("'" + url + "' is not a URL");
  if (u->scheme() != "http" && u->scheme() != "https") {
    return Status::Invalid("JWKS URLs must be https (or http inside a trusted network)");
  }
  std::string base = std::string(u->scheme()) + "://" + std::string(u->encoded_host_and_port());
  std::string target = std::string(u->encoded_path());
  if (target.empty()) target = "/";
  if (u->has_query()) target += "?" + std::string(u->encoded_query());
  http::ClientOptions options;
  options.ca_file = ca_file;
  http::Client client(base, options);
  ASSIGN_OR_RETURN(http::HttpResponse res, client.Send("GET", target));
  if (res.status != 200) {
    return Status::Unavailable("the JWKS URL answered " + std::to_string(res.status));
  }
  return res.body;
}

std::vector<std::string> StringOrArray(const json::object& claims, std::string_view name) {
  std::vector<std::string> out;
  const json::value* v = FindKey(claims, name);
  if (!v) return out;
  if (v->is_string()) out.emplace_back(v->get_string());
  if (v->is_array()) {
    for (const json::value& x : v->get_array())
      if (x.is_string()) out.emplace_back(x.get_string());
  }
  return out;
}

// A NumericDate: seconds since the epoch, an integer or a number (RFC 7519 section 2).
std::optional<int64_t> NumericDate(const json::object& claims, std::string_view name) {
  const json::value* v = FindKey(claims, name);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(std::min<uint64_t>(v->get_uint64(), INT64_MAX));
  if (v->is_double() && v->get_double() > -9e18 && v->get_double() < 9e18) {
    return static_cast<int64_t>(v->get_double());
  }
  return std::nullopt;
}

}  // namespace

struct TokenVerifier::Source {
  IssuerConfig config;
  mutable std::mutex mu;
  mutable std::shared_ptr<const Jwks> keys;  // guarded by mu
  mutable int64_t fetched_at = 0;            // guarded by mu
};

TokenVerifier::TokenVerifier(std::vector<IssuerConfig> issuers, int64_t leeway_seconds)
    : leeway_(leeway_seconds) {
  for (auto& c : issuers) {
    auto s = std::make_unique<Source>();
    s->config = std::move(c);
    sources_.push_back(std::move(s));
  }
}

TokenVerifier::~TokenVerifier() = default;

Status TokenVerifier::Init() {
  for (auto& s : sources_) {
    if (!s->config.jwks_file.empty()) {
      std::string text = ReadFileText(s->config.jwks_file);
      if (text.empty()) return Status::Invalid("cannot read JWKS file " + s->config.jwks_file);
      ASSIGN_OR_RETURN(Jwks keys, Jwks::Parse(text));
      if (keys.keys.empty()) {
        return Status::Invalid("JWKS file " + s->config.jwks_file + " holds no usable key");
      }
      s->keys = std::make_shared<const Jwks>(std::move(keys));
    } else if (s->config.jwks_url.empty()) {
      s->keys = std::make_shared<const Jwks>(s->config.keys);
    }
  }
  return Status::Ok();
}

Result<std::vector<Jwk>> TokenVerifier::KeysFor(const Source& src, Alg alg, std::string_view kid,
                                                int64_t now) const {
  std::shared_ptr<const Jwks> keys;
  {
    std::lock_guard lock(src.mu);
    keys = src.keys;
    bool remote = !src.config.jwks_url.empty();
    bool stale = remote && (!keys || now - src.fetched_at >= kRefreshSeconds);
    bool unknown_kid = remote && keys && keys->Candidates(alg, kid).empty() &&
                       now - src.fetched_at >= kUnknownKidRetrySeconds;
    if (stale || unknown_kid) {
      // Fetched under the lock: concurrent requests wait for one fetch instead of each making
      // their own; a failed fetch keeps the keys we had.
      auto text = FetchUrl(src.config.jwks_url, src.config.jwks_ca_file);
      src.fetched_at = now;
      if (text.ok()) {
        auto parsed = Jwks::Parse(*text);
        if (parsed.ok()) {
          src.keys = keys = std::make_shared<const Jwks>(std::move(parsed).value());
        } else {
          LogWarn("JWKS from " + src.config.jwks_url + " unreadable: " + parsed.status().message());
        }
      } else {
        LogWarn("JWKS from " + src.config.jwks_url + " not fetched: " + text.status().message());
      }
    }
  }
  std::vector<Jwk> out;
  if (keys) {
    for (const Jwk* k : keys->Candidates(alg, kid)) out.push_back(*k);
  }
  return out;
}

Result<Principal> TokenVerifier::Verify(std::string_view token, int64_t now) const {
  constexpr int64_t kCacheSeconds = 300;
  constexpr size_t kCacheEntries = 10000;
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(std::string(token));
    if (it != cache_.end()) {
      if (now <= it->second.until && now + leeway_ >= it->second.nbf) return it->second.principal;
      cache_.erase(it);
    }
  }
  ASSIGN_OR_RETURN(Principal p, VerifyUncached(token, now));
  std::lock_guard lock(cache_mu_);
  if (cache_.size() >= kCacheEntries) cache_.clear();
  Cached c;
  c.principal = p;
  c.nbf = p.not_before;
  c.until = std::min(now + kCacheSeconds, p.expires_at + leeway_);
  cache_.emplace(std::string(token), std::move(c));
  return p;
}

Result<Principal> TokenVerifier::VerifyUncached(std::string_view token, int64_t now) const {
  auto jws = ParseCompactJws(token);
  if (!jws.ok()) return Unauthorized("the bearer token is malformed: " + jws.status().message());
  auto claims_doc = ParseJson(jws->payload);
  if (!claims_doc.ok() || !claims_doc->is_object()) {
    return Unauthorized("the bearer token's claims are not a JSON object");
  }
  const json::object& claims = claims_doc->get_object();
  std::string iss(GetString(claims, "iss"));
  const Source* src = nullptr;
  for (const auto& s : sources_)
    if (s->config.issuer == iss) src = s.get();
  if (!src) return Unauthorized("the bearer token's issuer is not trusted here");
  bool allowed = false;
  for (Alg a : src->config.algorithms) allowed = allowed || a == jws->alg;
  if (!allowed) {
    return Unauthorized("the bearer token's algorithm " + std::string(AlgName(jws->alg)) +
                        " is not accepted for this issuer");
  }
  ASSIGN_OR_RETURN(std::vector<Jwk> keys, KeysFor(*src, jws->alg, jws->kid, now));
  if (keys.empty()) return Unauthorized("no key of the issuer matches the bearer token");
  bool verified = false;
  for (const Jwk& k : keys) verified = verified || VerifyJws(*jws, k).ok();
  if (!verified) return Unauthorized("the bearer token's signature does not verify");
  auto exp = NumericDate(claims, "exp");
  if (!exp) return Unauthorized("the bearer token has no expiry (exp)");
  if (now > *exp + leeway_) return Unauthorized("the bearer token has expired");
  auto nbf = NumericDate(claims, "nbf");
  if (nbf && now + leeway_ < *nbf) return Unauthorized("the bearer token is not valid yet (nbf)");
  std::vector<std::string> aud = StringOrArray(claims, "aud");
  bool aud_ok = false;
  for (const std::string& a : aud)
    for (const std::string& want : src->config.audiences) aud_ok = aud_ok || a == want;
  if (!aud_ok) return Unauthorized("the bearer token is not meant for this server (aud)");

  Principal p;
  p.issuer = iss;
  p.subject = std::string(GetString(claims, "sub"));
  p.client_id = std::string(GetString(claims, "client_id"));
  if (p.client_id.empty()) p.client_id = std::string(GetString(claims, "azp"));
  p.token_id = std::string(GetString(claims, "jti"));
  p.name = std::string(GetString(claims, "name"));
  p.fhir_user = std::string(GetString(claims, "fhirUser"));
  p.patient = std::string(GetString(claims, "patient"));
  p.purpose_of_use = std::string(GetString(claims, "purpose_of_use"));
  p.scopes = ParseScopes(GetString(claims, "scope"));
  p.roles = RolesFromClaims(claims);
  p.expires_at = *exp;
  p.not_before = nbf.value_or(0);
  if (p.subject.empty()) return Unauthorized("the bearer token has no subject (sub)");
  return p;
}

std::vector<RoleProfile> RolesFromClaims(const json::object& claims) {
  std::vector<RoleProfile> out;
  if (const json::value* roles = FindKey(claims, "nhsid_nrbac_roles"); roles && roles->is_array()) {
    for (const json::value& r : roles->get_array()) {
      if (!r.is_object()) continue;
      const json::object& o = r.get_object();
      RoleProfile rp;
      rp.urpid = std::string(GetString(o, "person_roleid"));
      rp.role = std::string(GetString(o, "role_code"));
      rp.organization = std::string(GetString(o, "org_code"));
      rp.activities = StringOrArray(o, "activity_codes");
      if (!rp.role.empty()) out.push_back(std::move(rp));
    }
  }
  std::string role(GetString(claims, "role"));
  if (!role.empty()) {
    RoleProfile rp;
    rp.role = role;
    rp.organization = std::string(GetString(claims, "org"));
    rp.activities = StringOrArray(claims, "activities");
    rp.urpid = std::string(GetString(claims, "urpid"));
    out.insert(out.begin(), std::move(rp));
  }
  return out;
}

std::string_view RoleCode(std::string_view full_role) {
  size_t colon = full_role.rfind(':');
  return colon == std::string_view::npos ? full_role : full_role.substr(colon + 1);
}

}  // namespace taproot::auth
