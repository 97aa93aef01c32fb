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
// BM_AuditAppend: the audit trail alone, as the HTTP server drives it: 64 clients, each
//   appending its next record as soon as the last is durable (fsync on), then one search that
//   indexes whatever is still queued. items_per_second = records/s; cpu_us_per_record is the
//   process's CPU time (every thread: writer, indexer, callers) per record.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "api/engine.h"
#include "audit/audit_log.h"
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

double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void BM_AuditAppend(benchmark::State& state) {
  const int64_t records = state.range(0);
  constexpr int kClients = 64;
  double cpu = 0;
  for (auto _ : state) {
    std::string dir = (fs::temp_directory_path() / ("taproot-audit-bench-" + NewUuid())).string();
    auto log = audit::AuditLog::Open(dir);
    if (!log.ok()) {
      state.SkipWithError(log.status().ToString().c_str());
      return;
    }
    std::atomic<int64_t> issued{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
    std::function<void()> next = [&] {
      int64_t n = issued.fetch_add(1);
      if (n >= records) return;
      audit::AuditEntry e;
      e.time_us = 1'700'000'000'000'000 + n;
      e.user = "Practitioner/bench";
      e.issuer = "urn:taproot:local";
      e.subject = "Practitioner/bench";
      e.role = "S8000:G8000:R8000";
      e.organization = "A81001";
      e.peer = "127.0.0.1";
      e.subtype = "read";
      e.action = "R";
      e.outcome = "0";
      e.outcome_desc = "200";
      e.request = "GET Observation/o" + std::to_string(n % 1000) + "-3";
      e.patients = {"p" + std::to_string(n % 1000)};
      (*log)->AppendAsync(std::move(e), [&](const Status&, int64_t) {
        if (done.fetch_add(1) + 1 == records) {
          std::lock_guard lock(mu);
          cv.notify_all();
        }
        next();
      });
    };
    double cpu0 = ProcessCpuSeconds();
    for (int c = 0; c < kClients; ++c) next();
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done.load() >= records; });
    }
    audit::AuditQuery q;
    q.patient = "p1";
    q.count = 1;
    benchmark::DoNotOptimize((*log)->Search(q));
    cpu += ProcessCpuSeconds() - cpu0;
    log->reset();
    fs::remove_all(dir);
  }
  state.SetItemsProcessed(state.iterations() * records);
  state.counters["cpu_us_per_record"] =
      cpu * 1e6 / static_cast<double>(state.iterations() * records);
}

}  // namespace

BENCHMARK(BM_AuditAppend)->Arg(200000)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_ParseValidateSynthea)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ImportSynthea)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_ImportSyntheaNoSync)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);
BENCHMARK_MAIN();
