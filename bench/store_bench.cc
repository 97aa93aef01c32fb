// In-process benchmarks (Google Benchmark). Each figure is printed next to a limit measured in
// the same run, so results from different machines can be compared as ratios.
//
//   build/taproot_bench --benchmark_format=json
//
// BM_ImportSynthea: the Synthea bundles through the engine into a fresh SQLite store, with fsync
//   on every commit (the real configuration). items_per_second = resources/s.
// BM_ParseValidateSynthea: the limit for the above: only parsing and validating the same
//   bundles (no store), on the same number of threads.
// BM_ImportSyntheaNoSync: the store with fsync off, to show what durability costs.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "api/engine.h"
#include "common/ids.h"
#include "common/json.h"
#include "fhir/model.h"
#include "fhir/validator.h"
#include "importer/importer.h"
#include "store/store.h"

namespace fs = std::filesystem;
using namespace taproot;

namespace {

struct Corpus {
  std::vector<std::string> texts;
  int64_t resources = 0;
};

const Corpus& Synthea() {
  static Corpus c = [] {
    Corpus c;
    for (auto& e : fs::directory_iterator(fs::path(TAPROOT_FIXTURES) / "bundles")) {
      std::ifstream in(e.path());
      std::stringstream ss;
      ss << in.rdbuf();
      c.texts.push_back(ss.str());
      c.resources += ParseJson(c.texts.back())->at("entry").as_array().size();
    }
    return c;
  }();
  return c;
}

void ImportOnce(benchmark::State& state, bool sync) {
  const Corpus& corpus = Synthea();
  for (auto _ : state) {
    state.PauseTiming();
    fs::path dir = fs::temp_directory_path() / ("taproot-bench-" + NewUuid());
    store::SqliteOptions o;
    o.dir = dir.string();
    o.sync = sync;
    auto store = std::move(store::OpenSqliteStore(o)).value();
    api::Engine engine(*store, fhir::R4());
    auto sink = importer::MakeEngineSink(engine);
    importer::ImportOptions io;
    io.progress = false;
    io.threads = static_cast<int>(state.range(0));
    state.ResumeTiming();
    auto summary = importer::Import({(fs::path(TAPROOT_FIXTURES) / "bundles").string()}, *sink, io);
    state.PauseTiming();
    if (!summary.ok() || summary->failures) state.SkipWithError("import failed");
    store->Close();
    fs::remove_all(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * corpus.resources);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  state.counters["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
}

void BM_ImportSynthea(benchmark::State& state) { ImportOnce(state, true); }
void BM_ImportSyntheaNoSync(benchmark::State& state) { ImportOnce(state, false); }

void BM_ParseValidateSynthea(benchmark::State& state) {
  const Corpus& corpus = Synthea();
  fhir::R4();
  int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i; (i = next++) < corpus.texts.size();) {
          auto doc = ParseJson(corpus.texts[i]);
          benchmark::DoNotOptimize(fhir::ValidateResource(fhir::R4(), *doc));
        }
      });
    }
    for (auto& t : pool) t.join();
  }
  state.SetItemsProcessed(state.iterations() * corpus.resources);
}

}  // namespace

BENCHMARK(BM_ParseValidateSynthea)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ImportSynthea)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_ImportSyntheaNoSync)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);
BENCHMARK_MAIN();
