#include "api/outcome.h"

#include <boost/json.hpp>

#include "common/json.h"

namespace taproot::api {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalid:
      return 400;
    case StatusCode::kUnauthorized:
      return 401;
    case StatusCode::kForbidden:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kMethodNotAllowed:
      return 405;
    case StatusCode::kNotAcceptable:
      return 406;
    case StatusCode::kConflict:
      return 409;
    case StatusCode::kGone:
      return 410;
    case StatusCode::kPreconditionFailed:
      return 412;
    case StatusCode::kTooLarge:
      return 413;
    case StatusCode::kUnsupportedMedia:
      return 415;
    case StatusCode::kUnprocessable:
      return 422;
    case StatusCode::kTooManyRequests:
      return 429;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kNotImplemented:
      return 501;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kAborted:
      return 409;
  }
  return 500;
}

const char* IssueTypeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalid:
      return "invalid";
    case StatusCode::kUnauthorized:
      return "login";
    case StatusCode::kForbidden:
      return "forbidden";
    case StatusCode::kNotFound:
      return "not-found";
    case StatusCode::kMethodNotAllowed:
      return "not-supported";
    case StatusCode::kNotAcceptable:
      return "not-supported";
    case StatusCode::kConflict:
      return "conflict";
    case StatusCode::kGone:
      return "deleted";
    case StatusCode::kPreconditionFailed:
      return "conflict";
    case StatusCode::kTooLarge:
      return "too-long";
    case StatusCode::kUnsupportedMedia:
      return "not-supported";
    case StatusCode::kUnprocessable:
      return "processing";
    case StatusCode::kTooManyRequests:
      return "throttled";
    case StatusCode::kNotImplemented:
      return "not-supported";
    case StatusCode::kUnavailable:
      return "transient";
    default:
      return "exception";
  }
}

json::value OperationOutcomeJson(const Status& status) {
  json::array issues;
  for (const Issue& i : status.issues()) {
    json::object o;
    static const char* kSeverity[] = {"fatal", "error", "warning", "information"};
    o["severity"] = kSeverity[static_cast<int>(i.severity)];
    o["code"] = i.code.empty() ? IssueTypeFor(status.code()) : i.code;
    o["diagnostics"] = i.diagnostics;
    if (!i.expression.empty()) o["expression"] = json::array{json::value(i.expression)};
    issues.push_back(std::move(o));
  }
  if (issues.empty()) {
    issues.push_back(json::object{{"severity", "error"}, {"code", "exception"}});
  }
  return json::object{{"resourceType", "OperationOutcome"}, {"issue", std::move(issues)}};
}

json::value InformationOutcome(const std::string& message) {
  return json::object{{"resourceType", "OperationOutcome"},
                      {"issue", json::array{json::object{{"severity", "information"},
                                                         {"code", "informational"},
                                                         {"diagnostics", message}}}}};
}

FhirResponse ErrorResponse(const Status& status) {
  FhirResponse r;
  r.status = HttpStatusFor(status.code());
  r.body = SerializeJson(OperationOutcomeJson(status));
  return r;
}

}  // namespace taproot::api
