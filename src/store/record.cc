#include "common/clock.h"
#include "store/store.h"

namespace taproot::store {

std::string WithVersionMeta(std::string_view text, int64_t version, int64_t last_updated) {
  static constexpr std::string_view kMeta = "\"meta\":{";
  size_t pos = text.find(kMeta);
  if (pos == std::string_view::npos) return std::string(text);
  pos += kMeta.size();
  std::string out;
  out.reserve(text.size() + 64);
  out.append(text.substr(0, pos));
  out += "\"versionId\":\"";
  out += std::to_string(version);
  out += "\",\"lastUpdated\":\"";
  out += FormatInstant(last_updated);
  out += '"';
  if (pos < text.size() && text[pos] != '}') out += ',';
  out.append(text.substr(pos));
  return out;
}

}  // namespace taproot::store
