#include "common/status.h"

namespace taproot {

Status Status::Make(StatusCode code, std::string message, std::string expression,
                    std::string issue_code) {
  Issue issue;
  issue.code = std::move(issue_code);
  issue.diagnostics = std::move(message);
  issue.expression = std::move(expression);
  return WithIssues(code, {std::move(issue)});
}

Status Status::WithIssues(StatusCode code, std::vector<Issue> issues) {
  Status s;
  if (code == StatusCode::kOk) return s;
  s.rep_ = std::make_shared<const Rep>(Rep{code, std::move(issues)});
  return s;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  if (!rep_ || rep_->issues.empty()) return kEmpty;
  return rep_->issues.front().diagnostics;
}

const std::vector<Issue>& Status::issues() const {
  static const std::vector<Issue> kNone;
  return rep_ ? rep_->issues : kNone;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out = StatusCodeName(code());
  for (const Issue& i : rep_->issues) {
    out += ": " + i.diagnostics;
    if (!i.expression.empty()) out += " (at " + i.expression + ")";
  }
  return out;
}

Status Status::Annotate(const std::string& prefix) const {
  if (ok()) return *this;
  std::vector<Issue> issues = rep_->issues;
  for (Issue& i : issues) i.diagnostics = prefix + i.diagnostics;
  return WithIssues(rep_->code, std::move(issues));
}

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalid:
      return "Invalid";
    case StatusCode::kUnauthorized:
      return "Unauthorized";
    case StatusCode::kForbidden:
      return "Forbidden";
    case StatusCode::kNotFound:
      return "NotFound";
    case StatusCode::kMethodNotAllowed:
      return "MethodNotAllowed";
    case StatusCode::kNotAcceptable:
      return "NotAcceptable";
    case StatusCode::kConflict:
      return "Conflict";
    case StatusCode::kGone:
      return "Gone";
    case StatusCode::kPreconditionFailed:
      return "PreconditionFailed";
    case StatusCode::kTooLarge:
      return "TooLarge";
    case StatusCode::kUnsupportedMedia:
      return "UnsupportedMedia";
    case StatusCode::kUnprocessable:
      return "Unprocessable";
    case StatusCode::kTooManyRequests:
      return "TooManyRequests";
    case StatusCode::kInternal:
      return "Internal";
    case StatusCode::kNotImplemented:
      return "NotImplemented";
    case StatusCode::kUnavailable:
      return "Unavailable";
    case StatusCode::kAborted:
      return "Aborted";
  }
  return "Unknown";
}

}  // namespace taproot
