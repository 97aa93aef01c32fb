// Status and Result<T>: errors as values.
//
// Every fallible function in Taproot returns a Status or a Result<T>. A Status carries a canonical
// code that maps one-to-one to an HTTP status and to an OperationOutcome issue code (see
// api/outcome.h), plus one or more issues, each with a human-readable diagnostic and, where it
// helps, a FHIRPath-style location ("Patient.birthDate"). Exceptions are used only at library
// edges (Boost.JSON, SQLite wrappers) and are converted to Status there.
//
// Thread-safety: Status and Result are values; copies are independent. A Status is cheap to copy
// (one shared pointer) and OK is a null pointer.
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace taproot {

enum class StatusCode {
  kOk = 0,
  kInvalid,             // 400: malformed or invalid input
  kUnauthorized,        // 401
  kForbidden,           // 403
  kNotFound,            // 404
  kMethodNotAllowed,    // 405
  kNotAcceptable,       // 406
  kConflict,            // 409: version conflict, id clash
  kGone,                // 410: deleted resource
  kPreconditionFailed,  // 412: If-Match mismatch, ambiguous conditional
  kTooLarge,            // 413
  kUnsupportedMedia,    // 415
  kUnprocessable,       // 422: valid syntax, violates business rules
  kTooManyRequests,     // 429
  kInternal,            // 500
  kNotImplemented,      // 501
  kUnavailable,         // 503: store closed or unreachable
  kAborted,             // 409: an optimistic read went stale before the write; retry
};

// One problem found; OperationOutcome.issue in FHIR terms.
struct Issue {
  enum class Severity { kFatal, kError, kWarning, kInformation };
  Severity severity = Severity::kError;
  std::string code;  // OperationOutcome issue type ("invalid", "structure", ...); empty: default
  std::string diagnostics;  // what is wrong and why
  std::string expression;   // where, as a FHIRPath expression; empty if not applicable
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status Make(StatusCode code, std::string message, std::string expression = {},
                     std::string issue_code = {});
  static Status Invalid(std::string msg, std::string expr = {}) {
    return Make(StatusCode::kInvalid, std::move(msg), std::move(expr));
  }
  static Status NotFound(std::string msg) { return Make(StatusCode::kNotFound, std::move(msg)); }
  static Status Gone(std::string msg) { return Make(StatusCode::kGone, std::move(msg)); }
  static Status Conflict(std::string msg) { return Make(StatusCode::kConflict, std::move(msg)); }
  static Status PreconditionFailed(std::string msg) {
    return Make(StatusCode::kPreconditionFailed, std::move(msg));
  }
  static Status Unprocessable(std::string msg, std::string expr = {}) {
    return Make(StatusCode::kUnprocessable, std::move(msg), std::move(expr));
  }
  static Status Internal(std::string msg) { return Make(StatusCode::kInternal, std::move(msg)); }
  static Status Unavailable(std::string msg) {
    return Make(StatusCode::kUnavailable, std::move(msg));
  }
  // A status holding several issues (validation); code applies to all of them.
  static Status WithIssues(StatusCode code, std::vector<Issue> issues);

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The first issue's diagnostics; empty when OK.
  const std::string& message() const;
  const std::vector<Issue>& issues() const;
  // "Invalid: message (at expr)" for logs and tests.
  std::string ToString() const;

  // Prefixes the diagnostics of every issue with context, e.g. "Bundle.entry[3]: ".
  Status Annotate(const std::string& prefix) const;

 private:
  struct Rep {
    StatusCode code;
    std::vector<Issue> issues;
  };
  std::shared_ptr<const Rep> rep_;
};

const char* StatusCodeName(StatusCode code);

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // `*Make()` moves the value out of a temporary: without this overload it bound to the const&
  // one and copied (a parsed DOM copied whole, into the same arena).
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

#define TAPROOT_CONCAT_INNER(a, b) a##b
#define TAPROOT_CONCAT(a, b) TAPROOT_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)       \
  do {                              \
    ::taproot::Status _st = (expr); \
    if (!_st.ok()) return _st;      \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(TAPROOT_CONCAT(_res_, __LINE__), lhs, expr)

}  // namespace taproot
