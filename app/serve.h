// `taproot serve`: FHIR over HTTP. Glues the HTTP server to the REST engine through the auth
// gateway: the /fhir base, /healthz and /readyz, SMART discovery, security headers,
// X-Request-ID, _pretty, access logging, demo data on first start, and a graceful stop on
// SIGTERM/SIGINT.
#pragma once

#include <string>
#include <vector>

#include "store_choice.h"

namespace taproot::app {

struct ServeOptions {
  StoreChoice store;
  std::string listen = "127.0.0.1:8080";
  int threads = 0;  // I/O threads; 0: one per core
  int workers = 64;
  size_t max_body_mb = 64;
  std::string demo_dir;   // loaded when the store is new
  std::string port_file;  // written with the bound port once listening (for tests)
  bool access_log = true;
  // Access control (docs/access-control.md).
  bool insecure_dev = false;           // no authentication at all; development only
  std::string policy_file;             // empty: the compiled-in policy
  std::string issuers_file;            // TOML [[issuer]] tables: identity providers to trust
  std::vector<std::string> audiences;  // accepted `aud` values beside the defaults
  bool audit_sync = true;
  bool no_audit = false;          // only with insecure_dev: the baseline for benchmarks
  std::string clients_file;       // TOML [[client]] registrations for the built-in token endpoint
  double rate_limit = 100;        // requests per second per client (burst twice that); 0: none
  std::string tls_cert, tls_key;  // PEM files; TLS when both are set (reloaded on SIGHUP)
};

int Serve(const ServeOptions& options);

}  // namespace taproot::app
