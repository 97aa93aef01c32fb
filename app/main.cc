// The taproot command line: serve, import, version.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "api/engine.h"
#include "auth_cmds.h"
#include "common/log.h"
#include "fhir/model.h"
#include "fhirpath_cmd.h"
#include "importer/importer.h"
#include "migrate.h"
#include "search/indexer.h"
#include "serve.h"
#include "store/store.h"

namespace taproot {
const char* GitCommit();  // generated at build time (cmake/git_commit.cmake)
}  // namespace taproot

using namespace taproot;

int main(int argc, char** argv) {
  CLI::App cli{"Taproot: a FHIR R4 health and care record exchange"};
  cli.require_subcommand(1);
  cli.fallthrough();  // global options may also follow the subcommand
  std::string log_level = "info";
  cli.add_option("--log-level", log_level, "debug, info, warn, error or off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));

  app::ServeOptions serve;
  auto* serve_cmd = cli.add_subcommand("serve", "Serve the FHIR REST API over HTTP");
  serve_cmd->add_option("--data", serve.store.data_dir, "Store directory (created if missing)")
      ->capture_default_str();
  app::AddStoreOptions(serve_cmd, serve.store);
  serve_cmd->add_option("--listen", serve.listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  serve_cmd->add_option("--threads", serve.threads,
                        "I/O threads (default: one per core; with PostgreSQL at least 8, as reads "
                        "wait for the database on them)");
  serve_cmd->add_option("--workers", serve.workers, "Request worker threads")
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-body-mb", serve.max_body_mb, "Largest request body accepted (413 beyond)")
      ->capture_default_str();
  serve_cmd->add_option("--demo", serve.demo_dir,
                        "Load the files in this directory when the store is new");
  serve_cmd->add_option("--port-file", serve.port_file,
                        "Write the bound port to this file once listening");
  bool no_access_log = false;
  serve_cmd->add_flag("--no-access-log", no_access_log, "Do not log one line per request");
  bool unsafe_no_sync = false;
  serve_cmd->add_flag("--unsafe-no-sync", unsafe_no_sync,
                      "Do not fsync commits (benchmarks only: acknowledged writes can be lost)");

  serve_cmd->add_flag("--insecure-dev", serve.insecure_dev,
                      "Turn authentication OFF (development only; announced loudly)");
  serve_cmd->add_flag("--no-audit", serve.no_audit,
                      "With --insecure-dev only: keep no audit trail (benchmark baselines)");
  serve_cmd->add_option("--policy", serve.policy_file,
                        "Access policy TOML (default: the compiled-in resources/policy/"
                        "default.toml)");
  serve_cmd->add_option("--issuers", serve.issuers_file,
                        "TOML file of [[issuer]] tables: identity providers whose tokens to trust");
  serve_cmd->add_option("--clients", serve.clients_file,
                        "TOML file of [[client]] registrations: enables the token endpoint "
                        "(POST /oauth2/token, client credentials with private_key_jwt)");
  serve_cmd
      ->add_option("--rate-limit", serve.rate_limit,
                   "Requests per second per client (burst twice that; 429 beyond); 0: off")
      ->capture_default_str();
  serve_cmd->add_option("--tls-cert", serve.tls_cert, "PEM certificate chain: serve HTTPS");
  serve_cmd->add_option("--tls-key", serve.tls_key, "PEM private key for --tls-cert");
  serve_cmd->add_option("--audience", serve.audiences,
                        "An accepted token audience (aud), beside urn:taproot:fhir; repeatable");

  app::TokenOptions token;
  auto* token_cmd = cli.add_subcommand(
      "token", "Print an access token signed by the store's own key (trusted by taproot serve)");
  token_cmd->add_option("--data", token.data_dir, "Store directory (holds the key)")
      ->capture_default_str();
  token_cmd->add_option("--user", token.user, "Who: a user id or Practitioner/123")->required();
  token_cmd->add_option("--role", token.role, "National RBAC role code, e.g. S8000:G8000:R8000");
  token_cmd->add_option("--org", token.org, "ODS code of the user's organisation");
  token_cmd->add_option("--patient", token.patient, "Patient id (a patient's own token)");
  token_cmd->add_option("--scope", token.scope, "SMART scopes (space separated)");
  token_cmd->add_option("--name", token.name, "Display name");
  token_cmd->add_option("--urpid", token.urpid, "Role profile id (for NHSD-Session-URID)");
  token_cmd->add_option("--activity", token.activities, "Extra national activity code");
  token_cmd->add_option("--purpose", token.purpose,
                        "Purpose of use (v3 ActReason): TREAT by default; HRESCH, PUBHLTH ... are "
                        "secondary uses, which the national data opt-out applies to");
  token_cmd->add_option("--audience", token.audience, "aud (default urn:taproot:fhir)");
  token_cmd->add_option("--expires-in", token.expires_in, "Lifetime in seconds")
      ->capture_default_str();

  std::string audit_dir = "data";
  auto* audit_cmd = cli.add_subcommand("audit", "Check or print the head of the audit trail");
  audit_cmd->require_subcommand(1);
  auto* verify_cmd = audit_cmd->add_subcommand("verify",
                                               "Check the hash chain; name the first "
                                               "broken record");
  auto* head_cmd = audit_cmd->add_subcommand("head", "Print the newest record's seq and hash");
  for (CLI::App* c : {verify_cmd, head_cmd}) {
    c->add_option("--data", audit_dir, "Store directory")->capture_default_str();
  }

  std::string import_server;
  app::StoreChoice import_store;
  import_store.data_dir.clear();
  std::vector<std::string> import_paths;
  // More files in flight than cores: the store commits concurrent writes together, and one
  // commit of many bundles rewrites far fewer index pages than many commits of one or two
  // (bench/RESULTS.md: 3,700 resources/s with 2 at once, 5,500/s with 8, on two cores).
  int import_threads = static_cast<int>(std::max(8u, 2 * std::thread::hardware_concurrency()));
  bool no_progress = false;
  auto* import_cmd = cli.add_subcommand(
      "import", "Load Bundles, NDJSON and resources into a store (--data) or a server (--server)");
  auto* data_opt =
      import_cmd->add_option("--data", import_store.data_dir, "Store directory (offline import)");
  auto* server_opt = import_cmd->add_option("--server", import_server,
                                            "FHIR base URL, e.g. http://127.0.0.1:8080/fhir");
  data_opt->excludes(server_opt);
  std::string import_token;
  import_cmd->add_option("--token", import_token,
                         "Bearer token for --server (default: $TAPROOT_TOKEN)");
  app::AddStoreOptions(import_cmd, import_store);
  import_cmd->add_option("--threads", import_threads, "Files loaded at once")
      ->capture_default_str();
  import_cmd->add_flag("--no-progress", no_progress, "Do not show a progress display");
  import_cmd->add_option("paths", import_paths, "Files or directories (.json, .ndjson, .zst)")
      ->required();

  // How writes are indexed, for both the server and an offline import.
  bool index_content = false, no_search_index = false;
  for (CLI::App* cmd : {serve_cmd, import_cmd}) {
    cmd->add_flag("--index-content", index_content,
                  "Index the full text of every resource for _content (slower writes, a larger "
                  "store; resources written without it need POST /$reindex)");
    cmd->add_flag("--no-search-index", no_search_index,
                  "Index only identifiers (conditional references need them): faster bulk loads; "
                  "other search parameters find nothing until POST /$reindex");
  }

  app::FhirPathOptions fp;
  auto* fhirpath_cmd = cli.add_subcommand(
      "fhirpath", "Evaluate a FHIRPath expression and print the result collection as JSON");
  fhirpath_cmd->add_option("--input", fp.input, "A FHIR resource in JSON");
  fhirpath_cmd->add_flag("--typed", fp.typed, "Print each item as {\"type\": T, \"value\": V}");
  fhirpath_cmd->add_flag("--batch", fp.batch,
                         "Read JSON lines {\"expression\", \"input\", \"mode\": \"strict\", "
                         "\"checkOrderedFunctions\": true} on stdin and write one result line "
                         "each");
  fhirpath_cmd->add_option("expression", fp.expression, "The FHIRPath expression");

  app::MigrateOptions migrate;
  bool migrate_no_progress = false;
  auto* migrate_cmd = cli.add_subcommand(
      "migrate", "Copy an embedded store, every version, into an empty PostgreSQL database");
  migrate_cmd->add_option("--from-sqlite", migrate.from_sqlite, "The store directory to copy")
      ->required();
  migrate_cmd->add_option("--postgres", migrate.to.postgres_url, "The target database URL")
      ->required();
  migrate_cmd->add_option("--batch", migrate.batch, "Versions per transaction")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  migrate_cmd->add_flag("--no-progress", migrate_no_progress, "Do not show a progress display");

  auto* version_cmd = cli.add_subcommand("version", "Print the version");

  CLI11_PARSE(cli, argc, argv);
  static const std::map<std::string, LogLevel> kLevels = {{"debug", LogLevel::kDebug},
                                                          {"info", LogLevel::kInfo},
                                                          {"warn", LogLevel::kWarn},
                                                          {"error", LogLevel::kError},
                                                          {"off", LogLevel::kOff}};
  SetLogLevel(kLevels.at(log_level));

  if (version_cmd->parsed()) {
    std::printf("taproot %s (commit %s, FHIR 4.0.1)\n", TAPROOT_VERSION, GitCommit());
    return 0;
  }
  search::SetContentIndexing(index_content);
  search::SetSearchIndexing(!no_search_index);
  if (fhirpath_cmd->parsed()) {
    if (!fp.batch && fp.expression.empty()) {
      std::fprintf(stderr, "fhirpath: give an EXPRESSION, or --batch\n");
      return 2;
    }
    return app::RunFhirPath(fp);
  }
  if (token_cmd->parsed()) return app::PrintToken(token);
  if (verify_cmd->parsed()) return app::AuditVerify(audit_dir);
  if (head_cmd->parsed()) return app::AuditHead(audit_dir);
  if (serve_cmd->parsed()) {
    serve.access_log = !no_access_log;
    serve.store.sync = !unsafe_no_sync;
    serve.audit_sync = !unsafe_no_sync;
    int rc = app::Serve(serve);
    FlushLogs();
    return rc;
  }
  if (migrate_cmd->parsed()) {
    migrate.progress = !migrate_no_progress;
    return app::Migrate(migrate);
  }
  if (import_cmd->parsed()) {
    bool to_postgres = import_store.IsPostgres();
    if (import_store.data_dir.empty() && import_server.empty() && !to_postgres) {
      std::fprintf(stderr,
                   "import: give --data DIR or --postgres URL (offline), or --server URL\n");
      return 2;
    }
    if (!import_server.empty() && to_postgres) {
      std::fprintf(stderr, "import: --server and --postgres exclude each other\n");
      return 2;
    }
    importer::ImportOptions io;
    io.threads = import_threads;
    io.progress = !no_progress;
    Result<importer::ImportSummary> summary = Status::Internal("not run");
    if (!import_server.empty()) {
      if (import_token.empty() && std::getenv("TAPROOT_TOKEN")) {
        import_token = std::getenv("TAPROOT_TOKEN");
      }
      auto sink = importer::MakeHttpSink(import_server, import_token);
      summary = importer::Import(import_paths, *sink, io);
    } else {
      import_store.bulk = true;
      auto store = app::OpenStore(import_store);
      if (!store.ok()) {
        std::fprintf(stderr, "import: %s\n", store.status().ToString().c_str());
        return 1;
      }
      api::Engine engine(**store, fhir::R4());
      auto sink = importer::MakeEngineSink(engine);
      summary = importer::Import(import_paths, *sink, io);
      if (Status st = (*store)->RefreshStatistics(); !st.ok()) {
        std::fprintf(stderr, "import: updating statistics: %s\n", st.ToString().c_str());
      }
      (*store)->Close();
    }
    if (!summary.ok()) {
      std::fprintf(stderr, "import: %s\n", summary.status().ToString().c_str());
      return 1;
    }
    std::printf("%s\n", summary->ToString().c_str());
    return summary->failures == 0 ? 0 : 3;
  }
  return 0;
}
