// Small string helpers for hot paths. Header-only, pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace taproot {

// a == b for the short strings of FHIR (keys, type names): compares eight bytes at a time inline
// instead of calling memcmp, whose call overhead dominates at these lengths.
inline bool SameText(std::string_view a, std::string_view b) {
  size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  for (; n >= 8; n -= 8, p += 8, q += 8) {
    uint64_t x, y;
    std::memcpy(&x, p, 8);
    std::memcpy(&y, q, 8);
    if (x != y) return false;
  }
  for (; n > 0; --n) {
    if (*p++ != *q++) return false;
  }
  return true;
}

}  // namespace taproot
