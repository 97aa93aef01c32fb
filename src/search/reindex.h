// Rebuilds search index rows for the current resources of a store (`$reindex`): after search
// parameters change, or for a store written by an older build. Rows are keyed by version, so
// reindexing a resource adds what is missing and leaves its existing rows; searches stay
// correct throughout.
//
// Thread-safety: Reindex may run while the server serves requests (it reads in snapshots and
// writes through the store's writer like any other write).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "fhir/model.h"
#include "store/store.h"

namespace taproot::search {

struct ReindexProgress {
  std::atomic<int64_t> total{0};  // current resources to visit (known after the first pass)
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> rows{0};  // index rows written
};

// Reindexes every current resource of `types` (every resource type when empty), a batch of 500
// at a time: one snapshot read, rows extracted on all cores, one write. Stops early with
// kAborted when `cancel` becomes true.
Status Reindex(store::Store& store, const fhir::Model& model, const std::vector<std::string>& types,
               ReindexProgress* progress = nullptr, const std::atomic<bool>* cancel = nullptr);

}  // namespace taproot::search
