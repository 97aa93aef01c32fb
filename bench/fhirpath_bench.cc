// FHIRPath evaluations per second over the Synthea bundles, one line of JSON per expression
// class (bench/fhirpath/expressions.json), to set beside fhirpath.js (bench/run-fhirpath.sh).
//   build/taproot_fhirpath_bench build/fixtures/bundles [seconds] [sweep|warm] [class]
#include <boost/json.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/files.h"
#include "common/json.h"
#include "fhirpath/engine.h"

using namespace taproot;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BUNDLE_DIR [seconds]\n", argv[0]);
    return 2;
  }
  double seconds = argc > 2 ? std::atof(argv[2]) : 3;
  std::vector<json::value> bundles;
  for (auto& e : std::filesystem::directory_iterator(argv[1])) {
    if (e.path().extension() == ".json")
      // One arena per bundle, as the server parses a request body (see ParseJson).
      bundles.push_back(*ParseJson(ReadFileText(e.path().string()),
                                   json::make_shared_resource<json::monotonic_resource>()));
  }
  auto exprs =
      ParseJson(ReadFileText(std::string(TAPROOT_SOURCE_DIR) + "/bench/fhirpath/expressions.json"));
  // sweep: each evaluation moves to the next bundle, so the DOM comes from main memory (the
  // cost is mostly cache misses); warm: each bundle is evaluated 20 times in a row, as when a
  // server evaluates expressions over a resource it has just parsed.
  std::string mode = argc > 3 ? argv[3] : "sweep";
  int repeat = mode == "warm" ? 20 : 1;
  std::string only = argc > 4 ? argv[4] : "";  // run only the classes containing this text
  for (const auto& e : exprs->as_array()) {
    std::string text(e.at("expression").as_string());
    if (std::string(e.at("class").as_string()).find(only) == std::string::npos) continue;
    auto compiled = fhirpath::Compile(text);
    if (!compiled.ok()) {
      std::fprintf(stderr, "%s: %s\n", text.c_str(), compiled.status().message().c_str());
      return 1;
    }
    int64_t evaluations = 0, results = 0;
    auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      for (const auto& b : bundles) {
        for (int rep = 0; rep < repeat; ++rep) {
          auto r = (*compiled)->Evaluate(b);
          if (r.ok()) results += static_cast<int64_t>(r->size());
        }
      }
      evaluations += static_cast<int64_t>(bundles.size()) * repeat;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::printf(
        "{\"engine\":\"taproot\",\"mode\":\"%s\",\"class\":\"%s\",\"evaluations_per_second\":%.1f,"
        "\"results_per_evaluation\":%.3f}\n",
        mode.c_str(), std::string(e.at("class").as_string()).c_str(), evaluations / elapsed,
        static_cast<double>(results) / evaluations);
  }
  return 0;
}
