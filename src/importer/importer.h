// Bulk import: loads transaction, batch and collection Bundles, NDJSON files and single
// resources (plain or .zst-compressed), walking directories. Files that hold no transaction
// (reference data: batch Bundles such as Synthea's hospital and practitioner files, NDJSON,
// single resources) are loaded first, then transaction Bundles, which may refer to them through
// conditional references. One bad file does not stop the others; a failed transaction Bundle
// leaves nothing behind.
//
// The target is a Sink: the engine in-process (offline import into a store) or a server over
// HTTP. Import() runs several files at once; sinks must be thread-safe or made per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "api/engine.h"
#include "common/status.h"

namespace taproot::importer {

// Applies one FHIR request (a Bundle POSTed to the base, or a single resource) and reports how
// many resources it wrote and how many failed.
class Sink {
 public:
  virtual ~Sink() = default;
  struct Outcome {
    int64_t written = 0;
    int64_t failed = 0;
    std::string error;  // first error, for the summary
  };
  // `method` and `path` as for the REST API ("POST", "" for a Bundle; "PUT", "Patient/1").
  virtual Outcome Send(const std::string& method, const std::string& path, std::string body) = 0;
};

// In-process: requests go straight to the engine. Thread-safe.
std::unique_ptr<Sink> MakeEngineSink(api::Engine& engine);
// Over HTTP to a running server at base_url ("http://127.0.0.1:8080/fhir"). Thread-safe (one
// connection per thread).
// `token`: a bearer token sent with every request (empty: none).
std::unique_ptr<Sink> MakeHttpSink(const std::string& base_url, const std::string& token = {});

struct ImportOptions {
  int threads = 2;
  bool progress = true;
  int64_t ndjson_batch = 500;  // resources per batch Bundle when loading NDJSON
};

struct ImportSummary {
  int64_t files = 0;
  int64_t resources = 0;
  int64_t failures = 0;
  double seconds = 0;
  int64_t peak_rss_mb = 0;                          // of this process, at the end of the import
  std::map<std::string, std::string> failed_files;  // path -> first error
  std::string ToString() const;
};

Result<ImportSummary> Import(const std::vector<std::string>& paths, Sink& sink,
                             const ImportOptions& options);

}  // namespace taproot::importer
