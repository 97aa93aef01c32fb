// Which store a command opens: the embedded SQLite store in a directory (the default), or a
// PostgreSQL database. Shared by `serve`, `import` and `migrate`, so every command takes the same
// options: --data DIR, --store sqlite|postgres, --postgres URL, --postgres-connections N.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace CLI {
class App;
}

namespace taproot::app {

struct StoreChoice {
  std::string kind = "sqlite";  // "sqlite" or "postgres"
  std::string data_dir = "./data";
  std::string postgres_url;
  std::vector<std::string> postgres_replicas;
  int postgres_connections = 16;
  bool sync = true;   // SQLite only: fsync every commit
  bool bulk = false;  // SQLite only: checkpoint seldom (an offline import; see SqliteOptions)

  bool IsPostgres() const { return kind == "postgres" || !postgres_url.empty(); }
};

// Adds --store, --postgres, --postgres-replica and --postgres-connections to a command (--data
// is the command's own).
void AddStoreOptions(CLI::App* cmd, StoreChoice& choice);

Result<std::unique_ptr<store::Store>> OpenStore(const StoreChoice& choice);

// For logs: the directory, or the PostgreSQL URL with any password replaced by "***".
std::string DescribeStore(const StoreChoice& choice);

}  // namespace taproot::app
