// Plain HTTP request and response values shared by the server and the client, so that no
// header outside http/*.cc includes Boost.Beast or Asio.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace taproot::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // upper case
  std::string target;  // path and query, as received
  Headers headers;     // names lower case
  std::string body;
  std::string remote;  // peer address

  const std::string& Header(std::string_view name) const {
    static const std::string kEmpty;
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return kEmpty;
  }
};

struct HttpResponse {
  int status = 200;
  Headers headers;  // as sent
  std::string body;
  // Server side: when set, the response may be sent only after an event elsewhere (its audit
  // record becoming durable). The server calls it with a continuation, from any thread, once:
  // true sends the response; false sends a 503 instead. No thread waits meanwhile.
  std::function<void(std::function<void(bool)>)> when_ready;

  const std::string& Header(std::string_view name) const {
    static const std::string kEmpty;
    for (const auto& [k, v] : headers) {
      if (k.size() == name.size() &&
          std::equal(k.begin(), k.end(), name.begin(),
                     [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
        return v;
    }
    return kEmpty;
  }
};

}  // namespace taproot::http
