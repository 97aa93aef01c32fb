#include "search/reindex.h"

#include <future>
#include <thread>

#include "common/json.h"
#include "search/indexer.h"

namespace taproot::search {

Status Reindex(store::Store& store, const fhir::Model& model, const std::vector<std::string>& types,
               ReindexProgress* progress, const std::atomic<bool>* cancel) {
  std::vector<std::string> types_to_visit = types.empty() ? model.ResourceTypes() : types;
  ReindexProgress local;
  ReindexProgress& p = progress ? *progress : local;
  // First the totals, so progress can be shown as a fraction.
  int64_t total = 0;
  for (const auto& type : types_to_visit) {
    store::SearchQuery q;
    q.type = type;
    q.count = 0;
    RETURN_IF_ERROR(store.ReadPrimary([&](store::ReadView& view) -> Status {
      ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
      total += page.total.value_or(0);
      return Status::Ok();
    }));
  }
  p.total = total;
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  for (const auto& type : types_to_visit) {
    std::optional<int64_t> after;
    for (;;) {
      if (cancel && *cancel) return Status::Make(StatusCode::kAborted, "reindex cancelled");
      std::vector<store::VersionRecord> batch;
      store::SearchQuery q;
      q.type = type;
      q.after_seq = after;
      q.count = 500;
      q.want_total = false;
      RETURN_IF_ERROR(store.ReadPrimary([&](store::ReadView& view) -> Status {
        ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
        batch = std::move(page.resources);
        return Status::Ok();
      }));
      if (batch.empty()) break;
      after = batch.back().seq;
      // Extract on every core; each task takes every n-th resource.
      std::vector<std::vector<store::IndexEntry>> rows(batch.size());
      std::vector<std::future<void>> tasks;
      for (size_t t = 0; t < threads; ++t) {
        tasks.push_back(std::async(std::launch::async, [&, t] {
          for (size_t i = t; i < batch.size(); i += threads) {
            auto doc = ParseJson(batch[i].json);
            if (doc.ok()) rows[i] = ExtractIndex(model, type, *doc);
          }
        }));
      }
      for (auto& task : tasks) task.get();
      std::vector<std::pair<int64_t, store::IndexEntry>> all;
      for (size_t i = 0; i < batch.size(); ++i) {
        for (auto& e : rows[i]) all.emplace_back(batch[i].seq, std::move(e));
      }
      RETURN_IF_ERROR(
          store.Write([&](store::WriteTxn& txn) -> Status { return txn.PutIndexRows(type, all); }));
      int64_t written = static_cast<int64_t>(all.size());
      p.rows += written;
      p.done += static_cast<int64_t>(batch.size());
    }
  }
  return Status::Ok();
}

}  // namespace taproot::search
