// Per-client rate limits: a token bucket per key (an authenticated caller's issuer and subject,
// or the peer address for requests that did not authenticate), refilled at `rate` per second up
// to `burst`. A request that finds its bucket empty is told how long to wait (429 with
// Retry-After). Buckets idle for a minute are forgotten. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace taproot::auth {

class RateLimiter {
 public:
  // rate <= 0: no limit.
  RateLimiter(double rate_per_second, double burst);
  // 0 if the request may go ahead (and takes a token); otherwise the seconds to wait.
  int64_t Take(const std::string& key, int64_t now_us);
  bool enabled() const { return rate_ > 0; }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_us = 0;
  };
  double rate_, burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
  int64_t swept_us_ = 0;                             // guarded by mu_
};

}  // namespace taproot::auth
