#include "serve.h"

#include <signal.h>
#include <toml++/toml.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "api/engine.h"
#include "api/request.h"
#include "audit/audit_log.h"
#include "auth/gateway.h"
#include "auth/local_key.h"
#include "auth/policy.h"
#include "auth/rate_limit.h"
#include "auth/token.h"
#include "auth/token_endpoint.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"
#include "fhir/model.h"
#include "http/server.h"
#include "importer/importer.h"
#include "search/indexer.h"
#include "search/query.h"
#include "store/store.h"

namespace taproot::app {
namespace {

constexpr std::string_view kBase = "/fhir";

http::HttpResponse Json(int status, std::string body) {
  http::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("Content-Type", "application/json");
  return r;
}

bool WantsPretty(const api::Params& query) {
  for (const auto& [k, v] : query)
    if (k == "_pretty") return v == "true";
  return false;
}

// [[issuer]] tables: issuer, jwks_file or jwks_url, audiences, algorithms.
Result<std::vector<auth::IssuerConfig>> LoadIssuers(const std::string& path,
                                                    const std::vector<std::string>& audiences) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::Invalid(path + ": " + std::string(e.description()));
  }
  std::vector<auth::IssuerConfig> out;
  const toml::array* list = root["issuer"].as_array();
  if (!list) return Status::Invalid(path + " has no [[issuer]] tables");
  for (const toml::node& n : *list) {
    const toml::table* t = n.as_table();
    if (!t) return Status::Invalid(path + ": [[issuer]] must be tables");
    auth::IssuerConfig c;
    c.issuer = (*t)["issuer"].value_or(std::string());
    c.jwks_file = (*t)["jwks_file"].value_or(std::string());
    c.jwks_url = (*t)["jwks_url"].value_or(std::string());
    c.jwks_ca_file = (*t)["jwks_ca_file"].value_or(std::string());
    if (c.issuer.empty() || (c.jwks_file.empty() == c.jwks_url.empty())) {
      return Status::Invalid(path +
                             ": each [[issuer]] needs issuer and one of jwks_file, "
                             "jwks_url");
    }
    if (const toml::array* a = (*t)["audiences"].as_array()) {
      for (const toml::node& x : *a)
        if (auto v = x.value<std::string>()) c.audiences.push_back(*v);
    }
    if (c.audiences.empty()) c.audiences = audiences;
    if (const toml::array* a = (*t)["algorithms"].as_array()) {
      c.algorithms.clear();
      for (const toml::node& x : *a) {
        auto v = x.value<std::string>();
        auto alg = v ? auth::ParseAlg(*v) : std::nullopt;
        if (!alg) return Status::Invalid(path + ": unknown algorithm in " + c.issuer);
        c.algorithms.push_back(*alg);
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

void SecurityHeaders(http::HttpResponse& out) {
  out.headers.emplace_back("X-Content-Type-Options", "nosniff");
  out.headers.emplace_back("X-Frame-Options", "DENY");
  out.headers.emplace_back("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  out.headers.emplace_back("Referrer-Policy", "no-referrer");
  out.headers.emplace_back("Cache-Control", "no-store");
}

}  // namespace

int Serve(const ServeOptions& options) {
  size_t colon = options.listen.rfind(':');
  if (colon == std::string::npos) {
    LogError("--listen must be HOST:PORT, got '" + options.listen + "'");
    return 2;
  }
  std::string host = options.listen.substr(0, colon);
  int port = std::atoi(options.listen.c_str() + colon + 1);

  // Block the stop signals in every thread; the main thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const fhir::Model& model = fhir::R4();
  auto opened = OpenStore(options.store);
  if (!opened.ok()) {
    LogError("cannot open the store: " + opened.status().ToString());
    return 1;
  }
  std::unique_ptr<store::Store> store = std::move(opened).value();
  api::Engine engine(*store, model);

  // Access control: the policy, the issuers trusted (always the store's own local key), and
  // the audit log.
  const auth::Policy* policy = &auth::Policy::Default();
  std::optional<auth::Policy> custom_policy;
  if (!options.policy_file.empty()) {
    auto p = auth::Policy::Parse(ReadFileText(options.policy_file), options.policy_file);
    if (!p.ok()) {
      LogError(p.status().ToString());
      return 2;
    }
    custom_policy = std::move(p).value();
    policy = &*custom_policy;
  }
  std::string key_dir = options.store.data_dir.empty() ? "data" : options.store.data_dir;
  auto local_key = auth::LoadOrCreateLocalKey(key_dir);
  if (!local_key.ok()) {
    LogError("local signing key: " + local_key.status().ToString());
    return 1;
  }
  std::vector<std::string> audiences = {auth::kLocalAudience};
  audiences.insert(audiences.end(), options.audiences.begin(), options.audiences.end());
  std::vector<auth::IssuerConfig> issuers;
  {
    auth::IssuerConfig local;
    local.issuer = auth::kLocalIssuer;
    local.audiences = audiences;
    local.keys.keys.push_back(*local_key);
    local.algorithms = {auth::Alg::kES256};
    issuers.push_back(std::move(local));
  }
  if (!options.issuers_file.empty()) {
    auto more = LoadIssuers(options.issuers_file, audiences);
    if (!more.ok()) {
      LogError(more.status().ToString());
      return 2;
    }
    for (auto& i : *more) issuers.push_back(std::move(i));
  }
  auth::TokenVerifier verifier(issuers);
  if (Status st = verifier.Init(); !st.ok()) {
    LogError(st.ToString());
    return 2;
  }
  if (options.no_audit && !options.insecure_dev) {
    LogError("--no-audit is allowed only with --insecure-dev: a secured server keeps its trail");
    return 2;
  }
  std::unique_ptr<audit::AuditLog> audit_log;
  if (!options.no_audit) {
    auto opened_log = audit::AuditLog::Open(key_dir, options.audit_sync);
    if (!opened_log.ok()) {
      LogError("audit log: " + opened_log.status().ToString());
      return 1;
    }
    audit_log = std::move(opened_log).value();
  }
  std::unique_ptr<auth::TokenEndpoint> token_endpoint;
  if (!options.clients_file.empty()) {
    auto clients = auth::LoadClients(options.clients_file);
    if (!clients.ok()) {
      LogError(clients.status().ToString());
      return 2;
    }
    token_endpoint = std::make_unique<auth::TokenEndpoint>(*clients, *local_key);
    if (Status st = token_endpoint->Init(); !st.ok()) {
      LogError("token endpoint: " + st.ToString());
      return 2;
    }
  }
  auth::GatewayOptions go;
  go.insecure_dev = options.insecure_dev;
  // --insecure-dev turns every protection off, rate limits too (tests and benchmarks drive it
  // hard from one address).
  go.rate_limit = options.insecure_dev ? 0 : options.rate_limit;
  auth::RateLimiter token_limiter(options.rate_limit, 2 * options.rate_limit);
  bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  std::string scheme = tls ? "https://" : "http://";
  auth::Gateway gateway(engine, model, *policy, &verifier, audit_log.get(), go);
  if (options.insecure_dev) {
    LogWarn(
        "*** --insecure-dev: AUTHENTICATION IS OFF. Anyone who can reach this port can read "
        "and change every record. Never use it with real data. ***");
  }
  auth::Jwks public_keys;
  public_keys.keys.push_back(*local_key);
  std::string jwks_json = public_keys.ToJson();

  if (!options.demo_dir.empty() && store->WasEmptyAtOpen()) {
    LogInfo("new store: loading demo data from " + options.demo_dir);
    auto sink = importer::MakeEngineSink(engine);
    importer::ImportOptions io;
    io.progress = false;
    auto summary = importer::Import({options.demo_dir}, *sink, io);
    if (!summary.ok()) {
      LogWarn("demo data not loaded: " + summary.status().ToString());
    } else {
      LogInfo(summary->ToString());
    }
  }

  http::ServerOptions ho;
  ho.host = host;
  ho.port = static_cast<uint16_t>(port);
  // Reads run on the I/O threads. On PostgreSQL a read waits for the database's answer there:
  // handing it to the worker pool and back cost more than the wait (reads by id, searches and
  // $everything were 12-46 % slower that way; bench/RESULTS.md, eighth session). So a
  // PostgreSQL server has at least kPostgresIoThreads of them, and a few reads waiting on the
  // database leave the others to serve. (The audit record's sync blocks no thread: the
  // connection waits for it, see HttpResponse::when_ready.)
  static constexpr int kPostgresIoThreads = 8;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ho.io_threads = options.threads > 0          ? options.threads
                  : options.store.IsPostgres() ? std::max(cores, kPostgresIoThreads)
                                               : cores;
  ho.worker_threads = options.workers;
  ho.reads_on_io_threads = true;
  ho.max_body_bytes = options.max_body_mb * 1024 * 1024;
  ho.tls_cert_file = options.tls_cert;
  ho.tls_key_file = options.tls_key;
  std::string fallback_host = options.listen;

  auto handler = [&](http::HttpRequest& hreq) -> http::HttpResponse {
    auto t0 = std::chrono::steady_clock::now();
    std::string path = hreq.target.substr(0, hreq.target.find('?'));
    std::string raw_query =
        hreq.target.size() > path.size() ? hreq.target.substr(path.size() + 1) : std::string();
    std::string request_id = hreq.Header("x-request-id");
    bool client_id = !request_id.empty() && request_id.size() <= 200;
    if (!client_id) request_id = NewUuid();
    http::HttpResponse out;
    if (path == "/healthz") {
      out = Json(200, R"({"status":"ok"})");
    } else if (path == "/readyz") {
      Status ready = store->Ready();
      out = ready.ok() ? Json(200, R"({"status":"ready"})")
                       : Json(503, json::serialize(json::object{{"status", "unavailable"},
                                                                {"reason", ready.message()}}));
    } else if (path == "/.well-known/smart-configuration" ||
               path == std::string(kBase) + "/.well-known/smart-configuration") {
      const std::string& host_header = hreq.Header("host");
      std::string base = scheme + (host_header.empty() ? fallback_host : host_header);
      json::object conf{
          {"issuer", auth::kLocalIssuer},
          {"jwks_uri", base + "/.well-known/jwks.json"},
          {"scopes_supported", json::array{"patient/*.rs", "user/*.cruds", "system/*.cruds",
                                           "patient/*.read", "user/*.read", "user/*.write"}},
          {"capabilities",
           json::array{"permission-v1", "permission-v2", "permission-patient", "permission-user"}}};
      if (token_endpoint) {
        conf["token_endpoint"] = base + "/oauth2/token";
        conf["grant_types_supported"] = json::array{"client_credentials"};
        conf["token_endpoint_auth_methods_supported"] = json::array{"private_key_jwt"};
        conf["token_endpoint_auth_signing_alg_values_supported"] =
            json::array{"RS256", "RS384", "ES256", "ES384"};
        conf["capabilities"].as_array().push_back("client-confidential-asymmetric");
      }
      out = Json(200, json::serialize(conf));
    } else if (path == "/oauth2/token" && token_endpoint) {
      const std::string& host_header = hreq.Header("host");
      std::string url =
          scheme + (host_header.empty() ? fallback_host : host_header) + "/oauth2/token";
      if (hreq.method != "POST") {
        out = Json(405, R"({"error":"invalid_request","error_description":"POST only"})");
      } else if (int64_t wait = token_limiter.Take("token\n" + hreq.remote, NowMicros())) {
        out = Json(429, R"({"error":"slow_down","error_description":"too many requests"})");
        out.headers.emplace_back("Retry-After", std::to_string(wait));
      } else {
        auth::TokenResponse tr = token_endpoint->Handle(hreq.body, {url}, NowMicros() / 1'000'000);
        out = Json(tr.status, tr.body);
      }
    } else if (path == "/.well-known/jwks.json") {
      out = Json(200, jwks_json);
    } else if (path.compare(0, kBase.size(), kBase) != 0 ||
               (path.size() > kBase.size() && path[kBase.size()] != '/')) {
      out = Json(
          404,
          R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"no such endpoint; the FHIR base is /fhir"}]})");
      out.headers[0].second = "application/fhir+json; charset=utf-8";
    } else {
      api::FhirRequest req;
      req.method = hreq.method;
      req.path = path.size() > kBase.size() + 1 ? path.substr(kBase.size() + 1) : "";
      req.raw_query = raw_query;
      auto query = search::ParseQueryString(raw_query);
      req.headers = std::move(hreq.headers);
      req.body = std::move(hreq.body);
      api::RequestContext ctx;
      ctx.request_id = request_id;
      ctx.client_request_id = client_id;
      const std::string& host_header = req.Header("host");
      ctx.base_url =
          scheme + (host_header.empty() ? fallback_host : host_header) + std::string(kBase);
      api::FhirResponse res;
      if (!query.ok()) {
        res.status = 400;
        res.body =
            R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"the query string is malformed"}]})";
      } else {
        req.query = std::move(query).value();
        auto reply = gateway.Handle(ctx, req, hreq.remote);
        res = std::move(reply.response);
        out.when_ready = std::move(reply.when_audited);
      }
      out.status = res.status;
      out.headers = std::move(res.headers);
      if (!res.body.empty()) {
        out.headers.emplace_back("Content-Type", res.content_type);
        out.body = WantsPretty(req.query) ? PrettyJsonText(res.body) : std::move(res.body);
      }
      if (req.method == "HEAD") out.body.clear();
    }
    out.headers.emplace_back("X-Request-ID", request_id);
    SecurityHeaders(out);
    if (tls) out.headers.emplace_back("Strict-Transport-Security", "max-age=31536000");
    if (options.insecure_dev)
      out.headers.emplace_back("Taproot-Insecure-Dev", "authentication is off");
    if (options.access_log && LogEnabled(LogLevel::kInfo)) {
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      // No query string and no body: they can carry patient identifiers.
      char line[512];
      std::snprintf(line, sizeof line,
                    "request method=%s path=%.200s status=%d duration_ms=%.2f request_id=%.100s",
                    hreq.method.c_str(), path.c_str(), out.status, ms, request_id.c_str());
      LogInfo(line);
    }
    return out;
  };

  http::Server server(ho, handler);
  Status st = server.Start();
  if (!st.ok()) {
    LogError(st.ToString());
    return 1;
  }
  LogInfo("Taproot " TAPROOT_VERSION " serving FHIR R4 at " + scheme + host + ":" +
          std::to_string(server.port()) + std::string(kBase) +
          " (store: " + DescribeStore(options.store) + ")");
  FlushLogs();
  if (!options.port_file.empty()) {
    std::ofstream pf(options.port_file + ".tmp");
    pf << server.port() << "\n";
    pf.close();
    std::rename((options.port_file + ".tmp").c_str(), options.port_file.c_str());
  }
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    // SIGHUP: renewed certificates are picked up without dropping connections.
    if (!server.tls()) {
      LogInfo("SIGHUP: not serving TLS; nothing to reload");
    } else if (Status rs = server.ReloadTls(); rs.ok()) {
      LogInfo("SIGHUP: TLS certificate and key reloaded");
    } else {
      LogError("SIGHUP: TLS reload failed, keeping the old certificate: " + rs.ToString());
    }
    FlushLogs();
  }
  LogInfo(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
          ": draining requests and closing the store");
  server.Stop(10);
  // The audit log's last callbacks post to the server's (stopped) event loop: close the log
  // while the server still exists.
  audit_log.reset();
  if (auto stats = store->Stats(); stats.ok() && stats->commits > 0) {
    LogInfo("store: " + std::to_string(stats->write_calls) + " writes in " +
            std::to_string(stats->commits) + " commits (group commit)");
  }
  store->Close();
  LogInfo("stopped cleanly");
  FlushLogs();
  return 0;
}

}  // namespace taproot::app
