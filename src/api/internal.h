// Internal to api/: the write and read operations shared by single interactions and Bundle
// entries, and helpers for building responses. Operations that take a WriteTxn run on the
// store's writer inside one transaction; they must be cheap (parsing and validation happen
// before, on the request thread).
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>

#include "api/request.h"
#include "common/json.h"
#include "common/status.h"
#include "fhir/model.h"
#include "store/store.h"

namespace taproot::api::internal {

// The outcome of one interaction: enough to build a response or a Bundle.entry.response.
struct OpResult {
  int status = 200;
  std::string type;
  std::string id;
  int64_t version = 0;
  int64_t last_updated = 0;
  std::string json;  // the resource with its version meta (reads); see Body()
  // For writes: the prepared text, turned into the body only if a response needs it (it lives
  // as long as the request's PreparedResource).
  const std::string* prepared_text = nullptr;

  // The resource as the client sees it; empty for deletes.
  std::string Body() const;
  std::string information;  // an informational message for an OperationOutcome, if any
};

// A resource ready to store: the final text (resourceType, id and meta first, without
// meta.versionId and meta.lastUpdated, which depend on the commit and are added on read), its
// compressed form and its index rows. Built outside the store writer so the costly part of a
// write runs in parallel. `resource` is kept only when asked (a conditional update, whose id is
// known only inside the writer); otherwise it is freed once the text is made.
struct PreparedResource {
  std::string type;
  std::string id;
  std::string body_id;  // the id the client put in the body, if any
  json::object resource;
  std::string text;
  std::string compressed;
  store::IndexRows index;  // never null
  std::string patient;     // search::PatientKey
};

PreparedResource PrepareResource(const fhir::Model& model, std::string type, std::string id,
                                 json::object resource, bool keep_resource = false);

using store::WithVersionMeta;

// Parses and validates a resource body. `expected_type` may be empty (any type).
Result<json::object> ParseResource(const fhir::Model& model, std::string_view body,
                                   std::string_view expected_type);

// Parses "W/\"3\"" or "3" into a version number.
Result<int64_t> ParseETagVersion(std::string_view etag);
std::string ETag(int64_t version);

class Ops {
 public:
  explicit Ops(const fhir::Model& model) : model_(model) {}

  // Ids of current resources of `type` matching the conditional query; at most 2 are returned
  // (enough to tell none, one and many). Unknown parameters are errors here: a conditional
  // operation must never match more than the client meant.
  // `may_create`: no match leads to a create (conditional create, conditional update), so
  // writes with the same criteria must take turns (store::SearchQuery::decides_create).
  Result<std::vector<std::string>> Match(store::ReadView& view, const std::string& type,
                                         std::string_view query, bool may_create = false) const;

  // create with the prepared id (server-assigned ids are chosen when preparing). With
  // if_none_exist, an existing match is returned with status 200 and nothing is written.
  Result<OpResult> Create(store::WriteTxn& txn, const PreparedResource& prepared,
                          std::string_view if_none_exist) const;
  // update or create-on-update with a client id.
  Result<OpResult> Update(store::WriteTxn& txn, const PreparedResource& prepared,
                          std::optional<int64_t> if_match, const std::string& method = "PUT") const;
  // The prepared id is used if nothing matches and the body has no id.
  Result<OpResult> ConditionalUpdate(store::WriteTxn& txn, std::string_view query,
                                     const PreparedResource& prepared,
                                     std::optional<int64_t> if_match) const;
  Result<OpResult> Delete(store::WriteTxn& txn, const std::string& type, const std::string& id,
                          std::optional<int64_t> if_match) const;
  Result<OpResult> ConditionalDelete(store::WriteTxn& txn, const std::string& type,
                                     std::string_view query) const;
  Result<OpResult> Patch(store::WriteTxn& txn, const std::string& type, const std::string& id,
                         const json::value& patch, std::optional<int64_t> if_match) const;

  // Read: 404 if never existed, 410 if deleted.
  Result<OpResult> Read(store::ReadView& view, const std::string& type,
                        const std::string& id) const;
  Result<OpResult> VRead(store::ReadView& view, const std::string& type, const std::string& id,
                         int64_t version) const;

  const fhir::Model& model() const { return model_; }

 private:
  Result<OpResult> WriteVersion(store::WriteTxn& txn, const PreparedResource& prepared,
                                int64_t version, const std::string& method, int status) const;

  const fhir::Model& model_;
};

// A conditional create that matched an existing resource answers with it: that resource is
// released through the request's guard like any read (403 if the caller may not see it).
Result<OpResult> ReleaseMatch(store::ReadView& view, const RequestContext& ctx, OpResult op);

// Fills status, Location, ETag and Last-Modified, and the body per the Prefer header.
FhirResponse WriteResponse(const RequestContext& ctx, const FhirRequest& req, const OpResult& op);
// The Location/fullUrl of a version: base/Type/id/_history/v.
std::string VersionUrl(const RequestContext& ctx, const OpResult& op);

}  // namespace taproot::api::internal
