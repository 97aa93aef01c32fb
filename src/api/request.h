// The FHIR REST layer's own request and response types, independent of any HTTP library, and
// the RequestContext every request carries from the first day: who is asking, in which role and
// organisation, and for what purpose. Authentication (the auth module) fills the context and
// attaches the request's AccessGuard, which the engine asks before reading or writing anything.
//
// Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace taproot::api {

class AccessGuard;

struct RequestContext {
  std::string request_id;          // X-Request-ID, or one the server made
  bool client_request_id = false;  // true if the client sent X-Request-ID (enables replay)
  std::string user = "anonymous";
  std::string role;          // national RBAC role code (S8000:G8000:R8000)
  std::string organization;  // ODS code of the caller's organisation
  std::string purpose_of_use = "TREAT";
  std::string base_url;  // "http://127.0.0.1:8080/fhir", for absolute links
  // Borrowed; null runs the request unrestricted (trusted in-process callers only: the offline
  // importer, the demo loader, engine tests). See api/access.h.
  AccessGuard* guard = nullptr;
};

using Params = std::vector<std::pair<std::string, std::string>>;

struct FhirRequest {
  std::string method;     // upper case
  std::string path;       // below the base, without leading slash: "Patient/1/_history/2"
  std::string raw_query;  // as received, still percent-encoded
  Params query;           // decoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  std::string body;

  // First value of a header (name in lower case), or empty.
  const std::string& Header(std::string_view name) const;
  // First value of a query parameter, or empty.
  const std::string* Query(std::string_view name) const;
};

struct FhirResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // compact JSON; the HTTP layer pretty-prints on _pretty=true
  std::string content_type = "application/fhir+json; charset=utf-8";

  void SetHeader(std::string name, std::string value);
  const std::string* FindHeader(std::string_view name) const;
};

}  // namespace taproot::api
