// `taproot migrate --from-sqlite DIR --postgres URL`: copies an embedded store into an empty
// PostgreSQL database with every version (tombstones included, timestamps and version numbers
// kept, in the original commit order), indexes the current versions for search, shows progress,
// and at the end checks that both stores hold the same numbers of resources and versions.
#pragma once

#include <string>

#include "store_choice.h"

namespace taproot::app {

struct MigrateOptions {
  std::string from_sqlite;  // the source store directory
  StoreChoice to;           // the target (PostgreSQL)
  int batch = 1000;         // versions per transaction
  int threads = 0;          // index extraction threads; 0: one per core
  bool progress = true;
};

// Exit code: 0 copied and verified, 1 failed, 2 bad arguments.
int Migrate(const MigrateOptions& options);

}  // namespace taproot::app
