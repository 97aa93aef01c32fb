// A small blocking HTTP/1.1 client with one keep-alive connection, for `taproot import
// --server`, fetching JWKS, the benchmarks and the integration tests. `https://` bases use TLS
// (1.2 or later) and verify the server's certificate and host name against the system's CA
// certificates, or a CA file given. Reconnects once if the server closed an idle connection.
// Not thread-safe: one client per thread.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "http/http_types.h"

namespace taproot::http {

struct ClientOptions {
  std::string ca_file;  // PEM CA certificates to trust for https instead of the system's
};

class Client {
 public:
  // `base` is "http://host:port" or "https://host:port" (a path after it is ignored).
  explicit Client(const std::string& base, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // target is the path and query, e.g. "/fhir/Patient?_count=1".
  Result<HttpResponse> Send(const std::string& method, const std::string& target,
                            const std::string& body = {}, const Headers& headers = {});

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taproot::http
