#include "common/base64.h"

namespace taproot {
namespace {

constexpr std::string_view kStandard =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlSafe =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

std::string Base64Encode(std::string_view data, bool url_safe) {
  std::string_view alphabet = url_safe ? kUrlSafe : kStandard;
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : data) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(alphabet[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(alphabet[((val << 8) >> (bits + 8)) & 0x3F]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

Result<std::string> Base64Decode(std::string_view text, bool url_safe) {
  std::string_view alphabet = url_safe ? kUrlSafe : kStandard;
  std::string out;
  int val = 0, bits = -8;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') break;
    size_t pos = alphabet.find(c);
    if (pos == std::string_view::npos) return Status::Invalid("invalid base64 data");
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

}  // namespace taproot
