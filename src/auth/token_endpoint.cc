#include "auth/token_endpoint.h"

#include <toml++/toml.h>

#include <boost/json.hpp>
#include <set>

#include "auth/local_key.h"
#include "common/base64.h"
#include "search/query.h"

namespace taproot::auth {
namespace {

TokenResponse Error(int status, std::string_view error, std::string_view description) {
  TokenResponse r;
  r.status = status;
  r.body = SerializeJson(json::object{{"error", error}, {"error_description", description}});
  return r;
}

}  // namespace

Result<std::vector<ClientRegistration>> LoadClients(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::Invalid(path + ": " + std::string(e.description()));
  }
  std::vector<ClientRegistration> out;
  const toml::array* list = root["client"].as_array();
  if (!list) return Status::Invalid(path + " has no [[client]] tables");
  for (const toml::node& n : *list) {
    const toml::table* t = n.as_table();
    if (!t) return Status::Invalid(path + ": [[client]] entries must be tables");
    ClientRegistration c;
    c.client_id = (*t)["client_id"].value_or(std::string());
    c.jwks_file = (*t)["jwks_file"].value_or(std::string());
    c.jwks_url = (*t)["jwks_url"].value_or(std::string());
    c.role = (*t)["role"].value_or(std::string("system"));
    c.org = (*t)["org"].value_or(std::string());
    if (const toml::array* s = (*t)["scopes"].as_array()) {
      for (const toml::node& x : *s)
        if (auto v = x.value<std::string>()) c.scopes.push_back(*v);
    }
    if (c.client_id.empty() || c.jwks_file.empty() == c.jwks_url.empty() || c.scopes.empty()) {
      return Status::Invalid(path +
                             ": each [[client]] needs client_id, scopes and one of "
                             "jwks_file, jwks_url");
    }
    out.push_back(std::move(c));
  }
  return out;
}

TokenEndpoint::TokenEndpoint(std::vector<ClientRegistration> clients, Jwk signing_key,
                             int64_t lifetime_seconds)
    : clients_(std::move(clients)), key_(std::move(signing_key)), lifetime_(lifetime_seconds) {}

Status TokenEndpoint::Init() {
  // Checked at start so a bad registration fails loudly instead of at a client's first call.
  for (const ClientRegistration& c : clients_) {
    IssuerConfig ic;
    ic.issuer = c.client_id;
    ic.jwks_file = c.jwks_file;
    ic.jwks_url = c.jwks_url;
    ic.audiences = {"(checked per request)"};
    TokenVerifier v({ic});
    RETURN_IF_ERROR(v.Init());
  }
  return Status::Ok();
}

TokenResponse TokenEndpoint::Handle(std::string_view form,
                                    const std::vector<std::string>& endpoint_urls, int64_t now) {
  auto params = search::ParseQueryString(form);
  if (!params.ok()) return Error(400, "invalid_request", "the form body is malformed");
  std::map<std::string, std::string> p;
  for (const auto& [k, v] : *params) {
    if (p.count(k)) return Error(400, "invalid_request", "parameter '" + k + "' is repeated");
    p[k] = v;
  }
  if (p["grant_type"] != "client_credentials") {
    return Error(400, "unsupported_grant_type", "only client_credentials is supported");
  }
  if (p["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
      p["client_assertion"].empty()) {
    return Error(400, "invalid_client",
                 "authenticate with a signed JWT: client_assertion_type "
                 "urn:ietf:params:oauth:client-assertion-type:jwt-bearer and client_assertion");
  }
  // Who the assertion says it is, before trusting anything in it.
  auto jws = ParseCompactJws(p["client_assertion"]);
  if (!jws.ok()) return Error(400, "invalid_client", "the client assertion is malformed");
  auto claims = ParseJson(jws->payload);
  if (!claims.ok() || !claims->is_object()) {
    return Error(400, "invalid_client", "the client assertion's claims are not an object");
  }
  std::string iss(GetString(claims->get_object(), "iss"));
  const ClientRegistration* client = nullptr;
  for (const ClientRegistration& c : clients_)
    if (c.client_id == iss) client = &c;
  if (!client) return Error(400, "invalid_client", "the client is not registered");
  if (!p["client_id"].empty() && p["client_id"] != client->client_id) {
    return Error(400, "invalid_client", "client_id does not match the assertion");
  }
  IssuerConfig ic;
  ic.issuer = client->client_id;
  ic.jwks_file = client->jwks_file;
  ic.jwks_url = client->jwks_url;
  ic.audiences = endpoint_urls;
  ic.algorithms = {Alg::kRS256, Alg::kRS384, Alg::kES256, Alg::kES384};
  TokenVerifier* verifier;
  {
    std::lock_guard lock(mu_);
    std::string key = client->client_id;
    for (const std::string& u : endpoint_urls) key += "\n" + u;
    auto& slot = verifiers_[key];
    if (!slot) {
      slot = std::make_unique<TokenVerifier>(std::vector<IssuerConfig>{ic}, 0);
      if (!slot->Init().ok()) {
        slot.reset();
        return Error(500, "server_error", "the client's keys cannot be read");
      }
    }
    verifier = slot.get();
  }
  auto principal = verifier->Verify(p["client_assertion"], now);
  if (!principal.ok()) return Error(400, "invalid_client", principal.status().message());
  if (principal->subject != client->client_id) {
    return Error(400, "invalid_client", "the assertion's sub must be the client id");
  }
  if (principal->expires_at > now + 300) {
    return Error(400, "invalid_client", "the assertion must expire within five minutes");
  }
  if (principal->token_id.empty()) return Error(400, "invalid_client", "the assertion needs a jti");
  {
    std::lock_guard lock(mu_);
    for (auto it = seen_jti_.begin(); it != seen_jti_.end();) {
      it = it->second < now ? seen_jti_.erase(it) : std::next(it);
    }
    std::string jti = client->client_id + "\n" + principal->token_id;
    if (seen_jti_.count(jti)) {
      return Error(400, "invalid_client", "the assertion was already used (jti replay)");
    }
    seen_jti_[jti] = principal->expires_at;
  }
  // Scopes: those asked for that the registration allows (all it allows when none are asked).
  std::set<std::string> allowed(client->scopes.begin(), client->scopes.end());
  std::string granted;
  if (p["scope"].empty()) {
    for (const std::string& s : client->scopes) granted += (granted.empty() ? "" : " ") + s;
  } else {
    std::string_view asked = p["scope"];
    size_t start = 0;
    while (start < asked.size()) {
      size_t end = asked.find(' ', start);
      if (end == std::string_view::npos) end = asked.size();
      std::string s(asked.substr(start, end - start));
      start = end + 1;
      if (s.empty()) continue;
      if (!allowed.count(s)) {
        return Error(400, "invalid_scope", "scope '" + s + "' is not allowed for this client");
      }
      granted += (granted.empty() ? "" : " ") + s;
    }
  }
  json::object token{{"iss", kLocalIssuer},
                     {"sub", client->client_id},
                     {"client_id", client->client_id},
                     {"aud", kLocalAudience},
                     {"iat", now},
                     {"exp", now + lifetime_},
                     {"scope", granted},
                     {"jti", Base64Encode(RandomBytes(12), true)}};
  if (client->role != "system") token["role"] = client->role;
  if (!client->org.empty()) token["org"] = client->org;
  auto signed_token =
      SignJws(key_, Alg::kES256, SerializeJson(token), json::object{{"typ", "JWT"}});
  if (!signed_token.ok()) return Error(500, "server_error", "the token could not be signed");
  TokenResponse r;
  r.body = SerializeJson(json::object{{"access_token", *signed_token},
                                      {"token_type", "bearer"},
                                      {"expires_in", lifetime_},
                                      {"scope", granted}});
  return r;
}

}  // namespace taproot::auth
