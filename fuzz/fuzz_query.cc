// libFuzzer: a query string -> decoded parameters -> a search on Patient (lenient) and
// Observation (strict) -> the SQL the store builds, run against an empty store. Neither the
// parser nor the SQL it produces may crash, hang or leak, whatever the parameters.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "common/ids.h"
#include "fhir/model.h"
#include "search/query.h"
#include "store/store.h"

namespace {

taproot::store::Store& TheStore() {
  static std::unique_ptr<taproot::store::Store> store = [] {
    taproot::store::SqliteOptions o;
    o.dir =
        (std::filesystem::temp_directory_path() / ("taproot-fuzz-" + taproot::NewUuid())).string();
    return std::move(taproot::store::OpenSqliteStore(o)).value();
  }();
  return *store;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const taproot::fhir::Model& model = taproot::fhir::R4();
  auto params = taproot::search::ParseQueryString(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!params.ok()) return 0;
  for (const char* type : {"Patient", "Observation"}) {
    auto parsed = taproot::search::ParseSearch(model, type, *params, type[0] == 'O');
    if (!parsed.ok()) continue;
    (void)TheStore().Read([&](taproot::store::ReadView& view) -> taproot::Status {
      return view.Search(parsed->query).status();
    });
  }
  return 0;
}
