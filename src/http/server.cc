#include "http/server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "common/log.h"

namespace taproot::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

class Server::Impl {
 public:
  Impl(ServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        workers_(static_cast<size_t>(std::max(1, options_.worker_threads))),
        acceptor_(ioc_) {}

  ~Impl() { Stop(0); }

  Status Start() {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(options_.host, ec);
    if (ec) return Status::Invalid("bad listen address '" + options_.host + "': " + ec.message());
    tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + options_.host + ":" +
                                 std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, Listen(), asio::detached);
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return Status::Ok();
  }

  uint16_t port() const { return port_; }

  void Stop(int drain_seconds) {
    if (stopped_.exchange(true)) return;
    stopping_ = true;
    asio::post(ioc_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(drain_seconds);
    while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    workers_.join();
  }

 private:
  asio::awaitable<void> Listen() {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopping_ || ec == asio::error::operation_aborted) co_return;
        continue;
      }
      sock.set_option(tcp::no_delay(true));
      asio::co_spawn(ioc_, Session(beast::tcp_stream(std::move(sock))), asio::detached);
    }
  }

  static HttpResponse Simple(int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
    return r;
  }

  asio::awaitable<void> Session(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    std::string remote;
    {
      boost::system::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string();
    }
    for (;;) {
      stream.expires_after(std::chrono::seconds(options_.idle_timeout_seconds));
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(options_.max_body_bytes);
      parser.header_limit(64 * 1024);
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser,
                                                         asio::as_tuple(asio::use_awaitable));
      // Beast reports a declared Content-Length over body_limit while parsing the header.
      bool too_large =
          hec == bhttp::error::body_limit ||
          (!hec && parser.content_length() && *parser.content_length() > options_.max_body_bytes);
      if (hec && !too_large) break;
      boost::system::error_code ec;
      if (!too_large && beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
        // The client waits for this before sending a large body (curl waits a second otherwise).
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, parser.get().version()};
        auto [cec, cn] =
            co_await bhttp::async_write(stream, cont, asio::as_tuple(asio::use_awaitable));
        if (cec) break;
      }
      if (!too_large) {
        auto [bec, bn] =
            co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        ec = bec;
        too_large = ec == bhttp::error::body_limit;
      }
      if (too_large) {
        in_flight_++;
        HttpResponse r = Simple(
            413,
            R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-long","diagnostics":"the request body is larger than the limit of )" +
                std::to_string(options_.max_body_bytes) + R"( bytes"}]})");
        co_await Write(stream, r, false, 11);
        in_flight_--;
        // Lingering close: discard what the client is still sending, so that it reads the 413
        // instead of a connection reset.
        boost::system::error_code sec;
        stream.socket().shutdown(tcp::socket::shutdown_send, sec);
        stream.expires_after(std::chrono::seconds(5));
        std::vector<char> sink(64 * 1024);
        for (;;) {
          auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink),
                                                           asio::as_tuple(asio::use_awaitable));
          if (rec) break;
        }
        co_return;
      }
      if (ec) break;
      in_flight_++;
      auto& breq = parser.get();
      HttpRequest req;
      req.method = std::string(breq.method_string());
      req.target = std::string(breq.target());
      req.remote = remote;
      for (const auto& f : breq) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        req.headers.emplace_back(std::move(name), std::string(f.value()));
      }
      req.body = std::move(breq.body());
      bool keep_alive = breq.keep_alive() && !stopping_;
      unsigned version = breq.version();
      // Reads are short: run them here, on the I/O thread, and save two thread switches. Writes
      // may wait for a group commit: they run on the worker pool so the I/O threads stay free.
      HttpResponse res;
      if (options_.reads_on_io_threads && (req.method == "GET" || req.method == "HEAD")) {
        res = Call(req);
      } else {
        res = co_await asio::co_spawn(
            workers_, [this, &req]() -> asio::awaitable<HttpResponse> { co_return Call(req); },
            asio::use_awaitable);
      }
      bool ok = co_await Write(stream, res, keep_alive, version);
      in_flight_--;
      if (!ok || !keep_alive || stopping_) break;
    }
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  HttpResponse Call(HttpRequest& req) {
    try {
      return handler_(req);
    } catch (const std::exception& e) {
      LogError(std::string("handler threw: ") + e.what());
      return Simple(
          500,
          R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"internal error"}]})");
    }
  }

  asio::awaitable<bool> Write(beast::tcp_stream& stream, const HttpResponse& r, bool keep_alive,
                              unsigned version) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
    res.set(bhttp::field::server, "Taproot");
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.body() = r.body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto [ec, n] = co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    co_return !ec;
  }

  ServerOptions options_;
  Handler handler_;
  asio::io_context ioc_;
  asio::thread_pool workers_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
};

Server::Server(ServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}
Server::~Server() = default;
Status Server::Start() { return impl_->Start(); }
uint16_t Server::port() const { return impl_->port(); }
void Server::Stop(int drain_seconds) { impl_->Stop(drain_seconds); }

}  // namespace taproot::http
