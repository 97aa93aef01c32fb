// The FHIR REST engine: turns a FhirRequest into a FhirResponse. It is the one place every data
// access passes through, so access policy and audit (the information-governance work) will sit
// here, reading the RequestContext.
//
// Routing follows R4 http.html: metadata, create, read, vread, update, patch, delete, history
// (instance, type, system), search (type, system, POST _search), batch and transaction, and the
// conditional forms of create, update and delete.
//
// Ownership: the Engine borrows the Store, which must outlive it. Thread-safety: Handle() may be
// called from many threads at once.
#pragma once

#include <string>

#include "api/request.h"
#include "fhir/model.h"
#include "store/store.h"

namespace taproot::api {

struct EngineOptions {
  std::string software_name = "Taproot";
  int64_t max_bundle_entries = 20000;
};

class Engine {
 public:
  Engine(store::Store& store, const fhir::Model& model, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  FhirResponse Handle(const RequestContext& ctx, const FhirRequest& req);

  // The CapabilityStatement served at /metadata (compact JSON).
  const std::string& CapabilityStatement() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taproot::api
