#include "store_choice.h"

#include <CLI/CLI.hpp>

namespace taproot::app {

void AddStoreOptions(CLI::App* cmd, StoreChoice& choice) {
  cmd->add_option("--store", choice.kind,
                  "sqlite (embedded, in --data) or postgres (the database at --postgres)")
      ->check(CLI::IsMember({"sqlite", "postgres"}))
      ->capture_default_str();
  cmd->add_option("--postgres", choice.postgres_url,
                  "PostgreSQL URL, e.g. postgresql://taproot@db.example:5432/taproot (implies "
                  "--store postgres; the schema is created or migrated on start)");
  cmd->add_option("--postgres-replica", choice.postgres_replicas,
                  "A streaming replica of --postgres to serve reads and searches (repeatable); "
                  "writes, and reads with Cache-Control: no-cache, go to the primary");
  cmd->add_option("--postgres-connections", choice.postgres_connections,
                  "Pooled PostgreSQL connections")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
}

Result<std::unique_ptr<store::Store>> OpenStore(const StoreChoice& choice) {
  if (choice.IsPostgres()) {
    if (choice.postgres_url.empty()) {
      return Status::Invalid("--store postgres needs --postgres URL");
    }
    store::PostgresOptions po;
    po.url = choice.postgres_url;
    po.connections = choice.postgres_connections;
    po.replicas = choice.postgres_replicas;
    return store::OpenPostgresStore(po);
  }
  store::SqliteOptions so;
  so.dir = choice.data_dir;
  so.sync = choice.sync;
  if (choice.bulk) so.checkpoint_pages = store::SqliteOptions::kBulkCheckpointPages;
  return store::OpenSqliteStore(so);
}

std::string DescribeStore(const StoreChoice& choice) {
  if (!choice.IsPostgres()) return choice.data_dir;
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db
  std::string url = choice.postgres_url;
  size_t scheme = url.find("://");
  size_t at = url.find('@');
  if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
    size_t colon = url.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) url.replace(colon + 1, at - colon - 1, "***");
  }
  size_t pw = url.find("password=");
  if (pw != std::string::npos) {
    size_t end = url.find_first_of("& ", pw);
    url.replace(pw + 9, end == std::string::npos ? std::string::npos : end - pw - 9, "***");
  }
  return "PostgreSQL " + url;
}

}  // namespace taproot::app
