// An HTTP/1.1 server on Boost.Beast and Asio with C++20 coroutines: optional TLS (OpenSSL, with
// certificate reload), keep-alive, a request size limit (413 beyond it), and a graceful stop that
// refuses new connections, lets in-flight requests finish, then returns. GET and HEAD handlers run
// on the I/O threads (they must be short: reads); other methods run on a worker pool, because they
// may wait for a disk sync. Each I/O thread runs an event loop of its own, and a connection stays
// on the loop it was dealt to for its life.
//
// Beast and Asio stay inside server.cc (pimpl). Thread-safety: Start/Stop/Wait from one
// controlling thread; the handler is called concurrently from worker threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "http/http_types.h"

namespace taproot::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;     // 0: pick a free port (see Server::port())
  int io_threads = 2;       // threads each running an event loop
  int worker_threads = 64;  // threads running handlers (which may wait on group commit)
  // GET and HEAD on the I/O threads, which saves two thread switches per read. A read that
  // waits (on PostgreSQL's answer) holds its I/O thread, and the other connections of its loop,
  // meanwhile: give such a server more I/O threads. Off: reads run on the worker pool too.
  bool reads_on_io_threads = true;
  size_t max_body_bytes = 64 * 1024 * 1024;
  int idle_timeout_seconds = 60;
  // TLS (both set): PEM certificate chain and private key. TLS 1.2 and 1.3 only, with forward-
  // secret AEAD ciphers (Mozilla's "intermediate" list for 1.2).
  std::string tls_cert_file;
  std::string tls_key_file;
};

using Handler = std::function<HttpResponse(HttpRequest&)>;

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts serving in background threads.
  Status Start();
  uint16_t port() const;
  // Stops accepting, waits up to `drain_seconds` for in-flight requests, then stops the loop.
  void Stop(int drain_seconds = 10);
  // Reads the certificate and key again (after renewal); new connections use them, open ones
  // keep theirs. On failure the old ones stay in use.
  Status ReloadTls();
  bool tls() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taproot::http
