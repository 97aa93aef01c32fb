// Base64 (RFC 4648), standard and URL-safe alphabets. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace taproot {

std::string Base64Encode(std::string_view data, bool url_safe = false);
// Ignores whitespace and stops at padding; fails on any other character.
Result<std::string> Base64Decode(std::string_view text, bool url_safe = false);

}  // namespace taproot
