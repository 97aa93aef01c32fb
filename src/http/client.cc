#include "http/client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

namespace taproot::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

class Client::Impl {
 public:
  explicit Impl(const std::string& base) {
    auto u = boost::urls::parse_uri(base);
    if (u) {
      host_ = std::string(u->host());
      port_ = u->has_port() ? std::string(u->port()) : "80";
    }
  }

  Result<HttpResponse> Send(const std::string& method, const std::string& target,
                            const std::string& body, const Headers& headers) {
    if (host_.empty()) return Status::Invalid("bad server URL");
    for (int attempt = 0; attempt < 2; ++attempt) {
      boost::system::error_code ec;
      if (!stream_) {
        stream_ = std::make_unique<beast::tcp_stream>(ioc_);
        tcp::resolver resolver(ioc_);
        auto results = resolver.resolve(host_, port_, ec);
        if (!ec) stream_->connect(results, ec);
        if (ec) {
          stream_.reset();
          return Status::Unavailable("cannot connect to " + host_ + ":" + port_ + ": " +
                                     ec.message());
        }
        stream_->socket().set_option(tcp::no_delay(true));
      }
      bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
      // RFC 7230 5.4: the port is part of Host unless it is the default.
      req.set(bhttp::field::host, port_ == "80" ? host_ : host_ + ":" + port_);
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
      bhttp::write(*stream_, req, ec);
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(1024ull * 1024 * 1024);
      if (!ec) bhttp::read(*stream_, buffer_, parser, ec);
      if (ec) {
        stream_.reset();
        buffer_.clear();
        if (attempt == 0) continue;  // the server may have closed an idle keep-alive connection
        return Status::Unavailable("request failed: " + ec.message());
      }
      auto& res = parser.get();
      HttpResponse out;
      out.status = static_cast<int>(res.result_int());
      for (const auto& f : res)
        out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      out.body = std::move(res.body());
      if (!res.keep_alive()) {
        stream_.reset();
        buffer_.clear();
      }
      return out;
    }
    return Status::Unavailable("request failed");
  }

 private:
  asio::io_context ioc_;
  std::unique_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::string host_;
  std::string port_;
};

Client::Client(const std::string& base) : impl_(std::make_unique<Impl>(base)) {}
Client::~Client() = default;
Result<HttpResponse> Client::Send(const std::string& method, const std::string& target,
                                  const std::string& body, const Headers& headers) {
  return impl_->Send(method, target, body, headers);
}

}  // namespace taproot::http
