// `taproot token` (a token signed by the store's local key) and `taproot audit verify|head`.
#pragma once

#include <string>
#include <vector>

namespace taproot::app {

struct TokenOptions {
  std::string data_dir = "data";
  std::string user;  // sub; also fhirUser when it looks like "Practitioner/123"
  std::string role;  // "S8000:G8000:R8000" or "R8000"; empty for a patient or system token
  std::string org;   // ODS code
  std::string patient;
  std::string scope;  // default by kind: user/*.cruds, patient/*.rs, system/*.cruds
  std::string name;
  std::string audience;
  std::string urpid;
  std::string purpose;  // v3 ActReason, e.g. TREAT (direct care, the default), HRESCH (research)
  std::vector<std::string> activities;
  long expires_in = 3600;
};

int PrintToken(const TokenOptions& options);
int AuditVerify(const std::string& data_dir);
int AuditHead(const std::string& data_dir);

}  // namespace taproot::app
