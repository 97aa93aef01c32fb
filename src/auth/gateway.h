// The front door of the FHIR API: authenticates each request, attaches its AccessGuard (the
// policy: scopes, role, legitimate relationship, patient confinement, sensitivity labels), runs
// it through the engine, and queues its AuditEvent; the response is released only once that is
// durable. Also
// serves the audit trail itself (AuditEvent read and search, break-glass alerts and their
// acknowledgement), which lives in the audit log, not the clinical store.
//
// Ownership: borrows the engine, policy, verifier and audit log, which outlive it. The guard
// reads relationships and consents through the view each request's engine call opens.
// Thread-safe: Handle() is called from many threads at once.
#pragma once

#include <memory>
#include <string>

#include "api/engine.h"
#include "api/request.h"
#include "audit/audit_log.h"
#include "auth/policy.h"
#include "auth/token.h"
#include "fhir/model.h"

namespace taproot::auth {

struct GatewayOptions {
  // No authentication: every request runs unrestricted as "anonymous" (still audited).
  bool insecure_dev = false;
  int64_t relationship_cache_seconds = 30;
  // Requests per second per client (and twice that as a burst); 0: no limit.
  double rate_limit = 0;
};

class Gateway {
 public:
  Gateway(api::Engine& engine, const fhir::Model& model, const Policy& policy,
          const TokenVerifier* verifier, audit::AuditLog* audit, GatewayOptions options);
  ~Gateway();

  struct Reply {
    api::FhirResponse response;
    // Set when an audit record was queued: call it with what to do once the record is durable
    // (true) or could not be written (false: the response must not be released). The response
    // is not sent before.
    std::function<void(std::function<void(bool)>)> when_audited;
  };

  // `ctx` arrives with request id and base URL; `peer` is the client address (audit).
  Reply Handle(api::RequestContext ctx, const api::FhirRequest& req, const std::string& peer);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taproot::auth
