#include "migrate.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/compress.h"
#include "common/json.h"
#include "fhir/model.h"
#include "importer/progress.h"
#include "search/compartments.h"
#include "search/indexer.h"

namespace taproot::app {
namespace {

struct Batch {
  std::vector<store::WriteRecord> records;
  std::vector<std::string> compressed;  // the records' bodies (they point here)
  int64_t last_seq = 0;
};

// Reads the next versions from the source, oldest first; current, non-deleted versions get their
// index rows (computed in parallel: FHIRPath over every search parameter is the costly part).
// Versions already replaced need none: their rows would never match.
Result<Batch> NextBatch(store::Store& source, int64_t after, int limit, int threads) {
  Batch batch;
  std::vector<bool> current;
  RETURN_IF_ERROR(source.Read([&](store::ReadView& view) -> Status {
    ASSIGN_OR_RETURN(std::vector<store::VersionRecord> versions, view.ScanVersions(after, limit));
    for (store::VersionRecord& v : versions) {
      ASSIGN_OR_RETURN(auto cur, view.ReadCurrent(v.type, v.id));
      current.push_back(!v.deleted && cur && cur->version == v.version);
      store::WriteRecord r;
      r.version = std::move(v);
      batch.records.push_back(std::move(r));
    }
    return Status::Ok();
  }));
  if (batch.records.empty()) return batch;
  batch.compressed.resize(batch.records.size());
  batch.last_seq = batch.records.back().version.seq;
  const fhir::Model& model = fhir::R4();
  std::vector<Status> errors(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < batch.records.size();
           i += static_cast<size_t>(threads)) {
        store::WriteRecord& r = batch.records[i];
        if (r.version.json.empty()) continue;
        batch.compressed[i] = ZstdCompress(r.version.json, 1);
        r.compressed_body = batch.compressed[i];
        auto doc = ParseJson(r.version.json);
        if (!doc.ok()) {
          errors[static_cast<size_t>(t)] = Status::Internal(
              r.version.type + "/" + r.version.id + " version " +
              std::to_string(r.version.version) + " is not valid JSON: " + doc.status().message());
          return;
        }
        auto rows = std::make_shared<std::vector<store::IndexEntry>>();
        if (current[i]) *rows = search::ExtractIndex(model, r.version.type, *doc);
        // Replaced versions have no index rows: their key is read from the resource.
        r.patient = search::PatientKey(r.version.type, r.version.id, *rows,
                                       rows->empty() ? &*doc : nullptr);
        r.index = std::move(rows);
      }
    });
  }
  for (auto& w : workers) w.join();
  for (const Status& st : errors) RETURN_IF_ERROR(st);
  return batch;
}

}  // namespace

int Migrate(const MigrateOptions& options) {
  if (options.from_sqlite.empty() || options.to.postgres_url.empty()) {
    std::fprintf(stderr, "migrate: give --from-sqlite DIR and --postgres URL\n");
    return 2;
  }
  if (!std::filesystem::exists(std::filesystem::path(options.from_sqlite) / "taproot.db")) {
    std::fprintf(stderr, "migrate: no taproot store in %s\n", options.from_sqlite.c_str());
    return 2;
  }
  StoreChoice from;
  from.data_dir = options.from_sqlite;
  auto source = OpenStore(from);
  if (!source.ok()) {
    std::fprintf(stderr, "migrate: %s\n", source.status().ToString().c_str());
    return 1;
  }
  StoreChoice to = options.to;
  to.kind = "postgres";
  auto target = OpenStore(to);
  if (!target.ok()) {
    std::fprintf(stderr, "migrate: %s\n", target.status().ToString().c_str());
    return 1;
  }
  if (!(*target)->WasEmptyAtOpen()) {
    std::fprintf(stderr, "migrate: %s already holds resources; migrate into an empty database\n",
                 DescribeStore(to).c_str());
    return 1;
  }
  auto before = (*source)->Stats();
  if (!before.ok()) {
    std::fprintf(stderr, "migrate: %s\n", before.status().ToString().c_str());
    return 1;
  }
  int threads = options.threads > 0
                    ? options.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int limit = std::max(1, options.batch);
  int64_t batches = (before->versions + limit - 1) / limit;
  importer::Progress progress("migrate", batches, before->versions, options.progress, "batches");
  auto start = std::chrono::steady_clock::now();
  int64_t after = 0, copied = 0;
  for (;;) {
    auto batch = NextBatch(**source, after, limit, threads);
    if (!batch.ok()) {
      std::fprintf(stderr, "\nmigrate: reading %s: %s\n", options.from_sqlite.c_str(),
                   batch.status().ToString().c_str());
      return 1;
    }
    if (batch->records.empty()) break;
    // Version numbers, timestamps and methods are kept as they were; the target gives each
    // version a new seq, in the same order.
    Status st = (*target)->Write([&](store::WriteTxn& txn) -> Status {
      for (const store::WriteRecord& r : batch->records) RETURN_IF_ERROR(txn.Put(r));
      return Status::Ok();
    });
    if (!st.ok()) {
      std::fprintf(stderr,
                   "\nmigrate: writing to %s: %s (nothing of this batch was kept; %lld "
                   "versions before it were)\n",
                   DescribeStore(to).c_str(), st.ToString().c_str(),
                   static_cast<long long>(copied));
      return 1;
    }
    auto n = static_cast<int64_t>(batch->records.size());
    copied += n;
    after = batch->last_seq;
    progress.Add(1, n, n, 0);
  }
  progress.Finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (Status st = (*target)->RefreshStatistics(); !st.ok()) {
    std::fprintf(stderr, "migrate: updating statistics: %s\n", st.ToString().c_str());
  }
  auto after_stats = (*target)->Stats();
  if (!after_stats.ok()) {
    std::fprintf(stderr, "migrate: %s\n", after_stats.status().ToString().c_str());
    return 1;
  }
  (*source)->Close();
  (*target)->Close();
  std::printf("migrate: copied %lld versions in %.1f s (%.0f versions/s) from %s to %s\n",
              static_cast<long long>(copied), secs, secs > 0 ? copied / secs : 0.0,
              options.from_sqlite.c_str(), DescribeStore(to).c_str());
  if (after_stats->versions != before->versions || after_stats->resources != before->resources) {
    std::printf(
        "migrate: VERIFY FAILED: source %lld resources, %lld versions; target %lld "
        "resources, %lld versions\n",
        static_cast<long long>(before->resources), static_cast<long long>(before->versions),
        static_cast<long long>(after_stats->resources),
        static_cast<long long>(after_stats->versions));
    return 1;
  }
  std::printf("migrate: verified: both stores hold %lld resources and %lld versions\n",
              static_cast<long long>(after_stats->resources),
              static_cast<long long>(after_stats->versions));
  return 0;
}

}  // namespace taproot::app
