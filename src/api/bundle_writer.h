// Writes Bundle JSON as text, splicing stored resource bytes in without re-parsing them: a read
// or search page is a byte copy into the envelope. Not thread-safe; one per response.
#pragma once

#include <string>
#include <string_view>

#include "common/json.h"

namespace taproot::api::internal {

class BundleWriter {
 public:
  BundleWriter(std::string_view type, std::optional<int64_t> total);
  void Link(std::string_view relation, std::string_view url);
  // Starts an entry; `resource_json` is inserted verbatim (must be a JSON object, or empty).
  // `extra` holds the remaining entry members (search/request/response) as a JSON object.
  void Entry(std::string_view full_url, std::string_view resource_json, const json::object& extra);
  std::string Finish();

 private:
  std::string out_;
  bool links_open_ = false;
  bool entries_open_ = false;
  bool first_link_ = true;
  bool first_entry_ = true;
};

}  // namespace taproot::api::internal
