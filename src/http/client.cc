#include "http/client.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

namespace taproot::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

class Client::Impl {
 public:
  Impl(const std::string& base, ClientOptions options) : options_(std::move(options)) {
    auto u = boost::urls::parse_uri(base);
    if (u) {
      tls_ = u->scheme() == "https";
      host_ = std::string(u->host());
      port_ = u->has_port() ? std::string(u->port()) : tls_ ? "443" : "80";
    }
  }

  Result<HttpResponse> Send(const std::string& method, const std::string& target,
                            const std::string& body, const Headers& headers) {
    if (host_.empty()) return Status::Invalid("bad server URL");
    for (int attempt = 0; attempt < 2; ++attempt) {
      boost::system::error_code ec;
      if (!stream_ && !tls_stream_) {
        Status st = Connect();
        if (!st.ok()) return st;
      }
      bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
      // RFC 7230 5.4: the port is part of Host unless it is the default.
      req.set(bhttp::field::host, port_ == (tls_ ? "443" : "80") ? host_ : host_ + ":" + port_);
      req.set(bhttp::field::accept, "application/fhir+json");
      bool has_ct = false;
      for (const auto& [k, v] : headers) {
        req.set(k, v);
        if (beast::iequals(k, "content-type")) has_ct = true;
      }
      if (!body.empty() && !has_ct) req.set(bhttp::field::content_type, "application/fhir+json");
      req.body() = body;
      req.keep_alive(true);
      req.prepare_payload();
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(1024ull * 1024 * 1024);
      if (tls_stream_) {
        bhttp::write(*tls_stream_, req, ec);
        if (!ec) bhttp::read(*tls_stream_, buffer_, parser, ec);
      } else {
        bhttp::write(*stream_, req, ec);
        if (!ec) bhttp::read(*stream_, buffer_, parser, ec);
      }
      if (ec) {
        Drop();
        if (attempt == 0) continue;  // the server may have closed an idle keep-alive connection
        return Status::Unavailable("request failed: " + ec.message());
      }
      auto& res = parser.get();
      HttpResponse out;
      out.status = static_cast<int>(res.result_int());
      for (const auto& f : res)
        out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      out.body = std::move(res.body());
      if (!res.keep_alive()) Drop();
      return out;
    }
    return Status::Unavailable("request failed");
  }

 private:
  Status Connect() {
    boost::system::error_code ec;
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(host_, port_, ec);
    auto fail = [&](const std::string& what) {
      Drop();
      return Status::Unavailable(what + " " + host_ + ":" + port_ + ": " + ec.message());
    };
    if (ec) return fail("cannot resolve");
    if (!tls_) {
      stream_ = std::make_unique<beast::tcp_stream>(ioc_);
      stream_->connect(results, ec);
      if (ec) return fail("cannot connect to");
      stream_->socket().set_option(tcp::no_delay(true));
      return Status::Ok();
    }
    if (!tls_ctx_) {
      tls_ctx_ = std::make_unique<ssl::context>(ssl::context::tls_client);
      SSL_CTX_set_min_proto_version(tls_ctx_->native_handle(), TLS1_2_VERSION);
      if (options_.ca_file.empty()) {
        tls_ctx_->set_default_verify_paths(ec);
      } else {
        tls_ctx_->load_verify_file(options_.ca_file, ec);
      }
      if (ec) return fail("cannot load CA certificates for");
      tls_ctx_->set_verify_mode(ssl::verify_peer);
    }
    tls_stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, *tls_ctx_);
    // SNI, and the certificate must name the host.
    SSL_set_tlsext_host_name(tls_stream_->native_handle(), host_.c_str());
    tls_stream_->set_verify_callback(ssl::host_name_verification(host_));
    beast::get_lowest_layer(*tls_stream_).connect(results, ec);
    if (ec) return fail("cannot connect to");
    beast::get_lowest_layer(*tls_stream_).socket().set_option(tcp::no_delay(true));
    tls_stream_->handshake(ssl::stream_base::client, ec);
    if (ec) return fail("TLS handshake failed with");
    return Status::Ok();
  }

  void Drop() {
    stream_.reset();
    tls_stream_.reset();
    buffer_.clear();
  }

  ClientOptions options_;
  asio::io_context ioc_;
  bool tls_ = false;
  std::unique_ptr<ssl::context> tls_ctx_;
  std::unique_ptr<beast::tcp_stream> stream_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  beast::flat_buffer buffer_;
  std::string host_;
  std::string port_;
};

Client::Client(const std::string& base, ClientOptions options)
    : impl_(std::make_unique<Impl>(base, std::move(options))) {}
Client::~Client() = default;
Result<HttpResponse> Client::Send(const std::string& method, const std::string& target,
                                  const std::string& body, const Headers& headers) {
  return impl_->Send(method, target, body, headers);
}

}  // namespace taproot::http
