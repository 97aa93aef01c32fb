// The seam between the FHIR engine and access control. The engine asks an AccessGuard, at the
// few points every request passes through, whether the caller may go on; the auth module
// implements it (one guard per request, carrying the caller's token, role and the facts audit
// needs). A request without a guard runs unrestricted: that is how the offline importer, the
// demo loader and engine-level tests call the engine, never how HTTP requests arrive.
//
// Points asked, in order:
//   Allow()   once per interaction (and per Bundle entry), before anything is read or written;
//   Release() for every resource about to leave the server (reads, search matches and includes,
//             history, $everything, Bundle responses), which may withhold or redact it;
//   Write()   for every resource about to be written (its new content and, for updates and
//             deletes, the version it replaces).
//
// A guard is used by one request; its methods may be called from that request's thread only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "store/store.h"

namespace taproot::api {

enum class Interaction {
  kRead,  // read and vread
  kSearch,
  kHistory,  // instance history reads; type and system history search
  kCreate,
  kUpdate,  // update and patch
  kDelete,
  kOperation,  // $everything, $reindex, _explain; `operation` names it
};

std::string_view InteractionName(Interaction i);

class AccessGuard {
 public:
  virtual ~AccessGuard() = default;

  // `type` is empty for system-wide interactions (whole-system search and history). `id` is the
  // instance for instance-level interactions, when known.
  virtual Status Allow(Interaction interaction, std::string_view type, std::string_view id = {},
                       std::string_view operation = {}) = 0;

  // `text` is the resource as it would be sent (empty for a deletion in a history); the guard may
  // rewrite it (redaction). Returns false to withhold the resource.
  virtual Result<bool> Release(store::ReadView& view, std::string_view type, std::string_view id,
                               std::string& text) = 0;

  // `patient_key` is the patient whose compartment the written content falls in (empty: none).
  virtual Status Write(store::ReadView& view, Interaction interaction, std::string_view type,
                       std::string_view id, std::string_view patient_key) = 0;

  // When the caller may only ever see one patient's compartment (a patient's own token), that
  // patient's id: searches are confined to it up front, so totals and pages stay right.
  virtual std::optional<std::string> ConfinedToPatient() const = 0;

  // True once Release() withheld anything in this request: totals are then left out, since they
  // would count what the caller may not see.
  virtual bool Withheld() const = 0;

  // True when counts must count only what Release() lets through (a clinician's relationships,
  // secondary use without opted-out patients): `_summary=count` then pages through the matches.
  virtual bool CountsByRelease() const = 0;
};

}  // namespace taproot::api
