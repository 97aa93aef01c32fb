#include "serve.h"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "api/engine.h"
#include "api/request.h"
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
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const fhir::Model& model = fhir::R4();
  auto opened = OpenStore(options.store);
  if (!opened.ok()) {
    LogError("cannot open the store: " + opened.status().ToString());
    return 1;
  }
  std::unique_ptr<store::Store> store = std::move(opened).value();
  api::Engine engine(*store, model);

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
  ho.io_threads = options.threads > 0
                      ? options.threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ho.worker_threads = options.workers;
  ho.reads_on_io_threads = !options.store.IsPostgres();
  ho.max_body_bytes = options.max_body_mb * 1024 * 1024;
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
          "http://" + (host_header.empty() ? fallback_host : host_header) + std::string(kBase);
      api::FhirResponse res;
      if (!query.ok()) {
        res.status = 400;
        res.body =
            R"({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"the query string is malformed"}]})";
      } else {
        req.query = std::move(query).value();
        res = engine.Handle(ctx, req);
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
  LogInfo("Taproot " TAPROOT_VERSION " serving FHIR R4 at http://" + host + ":" +
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
  sigwait(&signals, &sig);
  LogInfo(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
          ": draining requests and closing the store");
  server.Stop(10);
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
