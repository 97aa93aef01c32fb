// Batch and transaction Bundles (R4 http.html#transaction). Internal to api/.
//
// PlanBundle runs on the request thread: it checks the envelope, splits the entries, parses
// their URLs and validates their resources. ExecuteBundle runs on the store writer inside one
// transaction: a transaction is all or nothing; batch entries each run in a nested transaction
// and succeed or fail on their own. Entries run in the order the spec sets (DELETE, POST,
// PUT/PATCH, GET); the response lists them in request order.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/internal.h"

namespace taproot::api::internal {

struct BundleEntryPlan {
  size_t index = 0;
  std::string method;
  std::string url;
  std::string type;
  std::string id;
  int64_t version = 0;  // vread
  std::string query;    // the part after '?', for conditional and search URLs
  std::string full_url;
  std::optional<json::object> resource;
  // Set when the resource could be made final before the writer (the usual case); otherwise it
  // depends on a conditional create in the same transaction and is finished inside the writer.
  std::optional<PreparedResource> prepared;
  std::optional<json::value> patch;
  std::string if_none_exist;
  std::optional<int64_t> if_match;
  Status error;  // a problem found while planning (a batch reports it in the entry)
};

struct BundlePlan {
  bool transaction = false;
  std::vector<BundleEntryPlan> entries;
  // Conditional references resolved against a read snapshot before the writer: "Type?query" ->
  // "Type/id", or empty if it matched none or several. The writer checks each still holds and
  // aborts (kAborted, the caller retries) if one does not.
  std::map<std::string, std::string> assumptions;
};

Result<BundlePlan> PlanBundle(const fhir::Model& model, const RequestContext& ctx,
                              std::string_view body, int64_t max_entries);

// Assigns ids, rewrites references and prepares resources outside the writer, reading a
// snapshot of the store for conditional references.
Status PrepareBundle(store::Store& store, const Ops& ops, BundlePlan& plan);

// Runs a GET entry against the transaction's view (read, vread, search, history).
using GetRunner = std::function<FhirResponse(store::ReadView&, const FhirRequest&)>;

// Returns the response Bundle (compact JSON). The plan is taken by reference so that its
// resources are freed by the caller, not on the writer thread.
Result<std::string> ExecuteBundle(store::WriteTxn& txn, const Ops& ops, const RequestContext& ctx,
                                  const FhirRequest& req, BundlePlan& plan, const GetRunner& get);

std::string StatusLine(int status);

}  // namespace taproot::api::internal
