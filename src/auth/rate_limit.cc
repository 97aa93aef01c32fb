#include "auth/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace taproot::auth {

RateLimiter::RateLimiter(double rate_per_second, double burst)
    : rate_(rate_per_second), burst_(std::max(burst, 1.0)) {}

int64_t RateLimiter::Take(const std::string& key, int64_t now_us) {
  if (rate_ <= 0) return 0;
  std::lock_guard lock(mu_);
  if (now_us - swept_us_ > 60'000'000) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      it = now_us - it->second.at_us > 60'000'000 ? buckets_.erase(it) : std::next(it);
    }
    swept_us_ = now_us;
  }
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = burst_;
  } else {
    b.tokens = std::min(burst_, b.tokens + rate_ * static_cast<double>(now_us - b.at_us) / 1e6);
  }
  b.at_us = now_us;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - b.tokens) / rate_)));
}

}  // namespace taproot::auth
