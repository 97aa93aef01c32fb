#include "importer/importer.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/compress.h"
#include "common/ids.h"
#include "common/json.h"
#include "http/client.h"
#include "importer/progress.h"

namespace taproot::importer {
namespace fs = std::filesystem;

namespace {

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".zst") == 0) {
    return ZstdDecompress(data);
  }
  return data;
}

bool IsImportable(const fs::path& p) {
  std::string name = p.filename().string();
  auto ends = [&](const char* suffix) {
    std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".json") || ends(".ndjson") || ends(".json.zst") || ends(".ndjson.zst");
}

// Counts the entries of a Bundle (a transaction writes them all or none).
int64_t CountEntries(const json::value& bundle) {
  auto* e = bundle.as_object().if_contains("entry");
  return e && e->is_array() ? static_cast<int64_t>(e->get_array().size()) : 0;
}

// A batch Bundle that creates or updates each resource (update when it has an id).
std::string BatchOf(std::vector<json::value>& resources) {
  json::array entries;
  for (auto& r : resources) {
    json::object entry;
    std::string type(GetString(r.as_object(), "resourceType"));
    std::string id(GetString(r.as_object(), "id"));
    entry["request"] = id.empty() ? json::object{{"method", "POST"}, {"url", type}}
                                  : json::object{{"method", "PUT"}, {"url", type + "/" + id}};
    entry["resource"] = std::move(r);
    entries.push_back(std::move(entry));
  }
  resources.clear();
  return json::serialize(
      json::object{{"resourceType", "Bundle"}, {"type", "batch"}, {"entry", std::move(entries)}});
}

// Reads a batch-response Bundle and counts successes and failures.
Sink::Outcome CountBatchResponse(const std::string& body) {
  Sink::Outcome out;
  auto doc = ParseJson(body);
  if (!doc.ok() || !doc->is_object()) {
    out.error = "unreadable batch response";
    return out;
  }
  auto* entries = doc->as_object().if_contains("entry");
  if (!entries || !entries->is_array()) return out;
  for (const auto& e : entries->get_array()) {
    const json::object& resp = e.as_object().at("response").as_object();
    std::string_view status = GetString(resp, "status");
    if (!status.empty() && (status[0] == '2')) {
      out.written++;
    } else {
      out.failed++;
      if (out.error.empty()) {
        out.error = std::string(status);
        if (auto* oo = resp.if_contains("outcome")) {
          const auto& issues = oo->as_object().at("issue").as_array();
          if (!issues.empty()) {
            out.error += ": " + std::string(GetString(issues[0].as_object(), "diagnostics"));
          }
        }
      }
    }
  }
  return out;
}

std::string FirstDiagnostic(const std::string& body) {
  auto doc = ParseJson(body);
  if (!doc.ok() || !doc->is_object()) return body.substr(0, 200);
  auto* issues = doc->as_object().if_contains("issue");
  if (!issues || !issues->is_array() || issues->get_array().empty()) return body.substr(0, 200);
  const json::object& i = issues->get_array()[0].as_object();
  std::string msg(GetString(i, "diagnostics"));
  if (auto* ex = i.if_contains("expression"); ex && ex->is_array() && !ex->get_array().empty()) {
    msg += " (at " + std::string(ex->get_array()[0].get_string()) + ")";
  }
  return msg;
}

class EngineSink : public Sink {
 public:
  explicit EngineSink(api::Engine& engine) : engine_(engine) {}
  Outcome Send(const std::string& method, const std::string& path, std::string body) override {
    api::RequestContext ctx;
    ctx.request_id = NewUuid();
    ctx.user = "import";
    api::FhirRequest req;
    req.method = method;
    req.path = path;
    req.body = std::move(body);
    req.headers.emplace_back("content-type", "application/fhir+json");
    req.headers.emplace_back("prefer", "return=minimal");
    api::FhirResponse res = engine_.Handle(ctx, req);
    return Interpret(res.status, res.body, path);
  }

  static Outcome Interpret(int status, const std::string& body, const std::string& path) {
    Outcome out;
    if (status >= 300) {
      out.failed = 1;
      out.error = std::to_string(status) + ": " + FirstDiagnostic(body);
      return out;
    }
    if (path.empty()) return CountBatchResponse(body);
    out.written = 1;
    return out;
  }

 private:
  api::Engine& engine_;
};

class HttpSink : public Sink {
 public:
  HttpSink(std::string base, std::string token) : base_(std::move(base)), token_(std::move(token)) {
    auto scheme = base_.find("://");
    auto slash = base_.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    origin_ = base_.substr(0, slash);
    prefix_ = slash == std::string::npos ? "" : base_.substr(slash);
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  }
  Outcome Send(const std::string& method, const std::string& path, std::string body) override {
    thread_local std::unique_ptr<http::Client> client;
    thread_local std::string client_origin;
    if (!client || client_origin != origin_) {
      client = std::make_unique<http::Client>(origin_);
      client_origin = origin_;
    }
    // One X-Request-ID per request: if the client retries after a dropped connection, the
    // server applies the request once.
    http::Headers headers{{"Content-Type", "application/fhir+json"},
                          {"Prefer", "return=minimal"},
                          {"X-Request-ID", NewUuid()}};
    if (!token_.empty()) headers.emplace_back("Authorization", "Bearer " + token_);
    auto res = client->Send(method, prefix_ + "/" + path, body, headers);
    // Throttled (429): wait as told and send the same request again (the X-Request-ID makes a
    // repeat safe).
    for (int attempt = 0; attempt < 20 && res.ok() && res->status == 429; ++attempt) {
      int wait = std::clamp(std::atoi(res->Header("Retry-After").c_str()), 1, 60);
      std::this_thread::sleep_for(std::chrono::seconds(wait));
      res = client->Send(method, prefix_ + "/" + path, body, headers);
    }
    if (!res.ok()) {
      Outcome out;
      out.failed = 1;
      out.error = res.status().message();
      return out;
    }
    return EngineSink::Interpret(res->status, res->body, path);
  }

 private:
  std::string base_, token_, origin_, prefix_;
};

struct FileTask {
  std::string path;
  int64_t bytes = 0;
};

}  // namespace

std::unique_ptr<Sink> MakeEngineSink(api::Engine& engine) {
  return std::make_unique<EngineSink>(engine);
}
std::unique_ptr<Sink> MakeHttpSink(const std::string& base_url, const std::string& token) {
  return std::make_unique<HttpSink>(base_url, token);
}

std::string ImportSummary::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "imported %lld resources from %lld files in %.2f s (%.0f resources/s), %lld "
                "failed, peak RSS %lld MB",
                static_cast<long long>(resources), static_cast<long long>(files), seconds,
                seconds > 0 ? resources / seconds : 0.0, static_cast<long long>(failures),
                static_cast<long long>(peak_rss_mb));
  std::string out = buf;
  for (const auto& [file, error] : failed_files) out += "\n  failed: " + file + ": " + error;
  return out;
}

Result<ImportSummary> Import(const std::vector<std::string>& paths, Sink& sink,
                             const ImportOptions& options) {
  std::vector<FileTask> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        if (it->is_regular_file() && IsImportable(it->path())) {
          files.push_back({it->path().string(), static_cast<int64_t>(it->file_size())});
        }
      }
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back({p, static_cast<int64_t>(fs::file_size(p, ec))});
    } else {
      return Status::NotFound("no such file or directory: " + p);
    }
  }
  std::sort(files.begin(), files.end(),
            [](const FileTask& a, const FileTask& b) { return a.path < b.path; });

  ImportSummary summary;
  std::mutex mu;
  int64_t total_bytes = 0;
  for (const auto& f : files) total_bytes += f.bytes;
  Progress progress("import", static_cast<int64_t>(files.size()), total_bytes, options.progress);
  auto start = std::chrono::steady_clock::now();

  auto fail = [&](const std::string& path, const std::string& error, int64_t count) {
    std::lock_guard lock(mu);
    summary.failures += count;
    summary.failed_files.emplace(path, error);
  };

  // Phase 1 loads everything that is not a transaction; transactions wait for phase 2.
  std::vector<FileTask> transactions;  // re-read in phase 2, to bound memory
  auto process = [&](const FileTask& f, std::string data) {
    int64_t written = 0, failed = 0;
    std::string error;
    auto account = [&](const Sink::Outcome& o) {
      written += o.written;
      failed += o.failed;
      if (error.empty() && !o.error.empty()) error = o.error;
    };
    bool ndjson = f.path.find(".ndjson") != std::string::npos;
    if (ndjson) {
      std::vector<json::value> batch;
      size_t start_pos = 0;
      int64_t line_no = 0;
      while (start_pos < data.size()) {
        size_t nl = data.find('\n', start_pos);
        if (nl == std::string::npos) nl = data.size();
        std::string_view line(data.data() + start_pos, nl - start_pos);
        start_pos = nl + 1;
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        auto v = ParseJson(line);
        if (!v.ok() || !v->is_object()) {
          failed++;
          if (error.empty()) error = "line " + std::to_string(line_no) + ": not a JSON resource";
          continue;
        }
        batch.push_back(std::move(v).value());
        if (static_cast<int64_t>(batch.size()) >= options.ndjson_batch) {
          account(sink.Send("POST", "", BatchOf(batch)));
        }
      }
      if (!batch.empty()) account(sink.Send("POST", "", BatchOf(batch)));
    } else {
      auto doc = ParseJson(data);
      if (!doc.ok() || !doc->is_object()) {
        fail(f.path, doc.ok() ? "not a JSON object" : doc.status().message(), 1);
        progress.Add(1, f.bytes, 0, 1);
        return;
      }
      const json::object& obj = doc->as_object();
      std::string_view rt = GetString(obj, "resourceType");
      std::string_view bt = GetString(obj, "type");
      if (rt == "Bundle" && (bt == "transaction" || bt == "batch")) {
        int64_t n = CountEntries(*doc);
        Sink::Outcome o = sink.Send("POST", "", std::move(data));
        if (bt == "transaction" && o.failed) {
          o.failed = n;  // all or nothing
          o.written = 0;
        }
        account(o);
      } else if (rt == "Bundle") {
        // collection, searchset, document...: load the resources it holds.
        std::vector<json::value> batch;
        if (auto* entries = obj.if_contains("entry"); entries && entries->is_array()) {
          for (const auto& e : entries->get_array()) {
            if (auto* r = e.as_object().if_contains("resource")) batch.push_back(*r);
            if (static_cast<int64_t>(batch.size()) >= options.ndjson_batch) {
              account(sink.Send("POST", "", BatchOf(batch)));
            }
          }
        }
        if (!batch.empty()) account(sink.Send("POST", "", BatchOf(batch)));
      } else {
        std::string id(GetString(obj, "id"));
        account(sink.Send(id.empty() ? "POST" : "PUT",
                          std::string(rt) + (id.empty() ? "" : "/" + id), std::move(data)));
      }
    }
    if (failed) fail(f.path, error, 0);
    {
      std::lock_guard lock(mu);
      summary.resources += written;
      summary.failures += failed;
      summary.files++;
    }
    progress.Add(1, f.bytes, written, failed);
  };

  auto run_parallel = [&](size_t count, const std::function<void(size_t)>& fn) {
    std::atomic<size_t> next{0};
    std::vector<std::thread> threads;
    int n = std::max(1, std::min<int>(options.threads, static_cast<int>(count)));
    for (int t = 0; t < n; ++t) {
      threads.emplace_back([&] {
        for (size_t i; (i = next++) < count;) fn(i);
      });
    }
    for (auto& t : threads) t.join();
  };

  // Reads a file, or records why it could not be read.
  auto read = [&](const FileTask& f) -> std::optional<std::string> {
    auto data = ReadFile(f.path);
    if (data.ok()) return std::move(data).value();
    fail(f.path, data.status().message(), 1);
    progress.Add(1, f.bytes, 0, 1);
    return std::nullopt;
  };
  std::mutex tx_mu;
  run_parallel(files.size(), [&](size_t i) {
    auto data = read(files[i]);
    if (!data) return;
    // Peek at the top of the file: a transaction Bundle waits for phase 2.
    std::string_view head(data->data(), std::min<size_t>(data->size(), 4096));
    bool is_tx = head.find("\"Bundle\"") != std::string_view::npos &&
                 (head.find("\"transaction\"") != std::string_view::npos);
    if (is_tx) {
      std::lock_guard lock(tx_mu);
      transactions.push_back(files[i]);
      return;
    }
    process(files[i], std::move(*data));
  });
  std::sort(transactions.begin(), transactions.end(),
            [](const FileTask& a, const FileTask& b) { return a.path < b.path; });
  run_parallel(transactions.size(), [&](size_t i) {
    if (auto data = read(transactions[i])) process(transactions[i], std::move(*data));
  });
  progress.Finish();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  summary.peak_rss_mb = ru.ru_maxrss / 1024;
  return summary;
}

}  // namespace taproot::importer
