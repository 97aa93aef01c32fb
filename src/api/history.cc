// History and search: Bundles of type history and searchset, with paging links.
#include "api/history.h"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <charconv>

#include "api/bundle_writer.h"
#include "api/outcome.h"
#include "common/clock.h"
#include "search/query.h"

namespace taproot::api::internal {

BundleWriter::BundleWriter(std::string_view type, std::optional<int64_t> total) {
  out_.reserve(4096);
  out_ += R"({"resourceType":"Bundle","type":")";
  out_ += type;
  out_ += R"(","timestamp":")";
  out_ += FormatInstant(NowMicros());
  out_ += '"';
  if (total) {
    out_ += ",\"total\":";
    out_ += std::to_string(*total);
  }
}

void BundleWriter::Link(std::string_view relation, std::string_view url) {
  if (!links_open_) {
    out_ += ",\"link\":[";
    links_open_ = true;
  }
  if (!first_link_) out_ += ',';
  first_link_ = false;
  out_ += json::serialize(json::object{{"relation", relation}, {"url", url}});
}

void BundleWriter::Entry(std::string_view full_url, std::string_view resource_json,
                         const json::object& extra) {
  if (links_open_) {
    out_ += ']';
    links_open_ = false;
  }
  if (!entries_open_) {
    out_ += ",\"entry\":[";
    entries_open_ = true;
  }
  if (!first_entry_) out_ += ',';
  first_entry_ = false;
  out_ += '{';
  bool need_comma = false;
  if (!full_url.empty()) {
    out_ += "\"fullUrl\":";
    out_ += json::serialize(json::string(full_url));
    need_comma = true;
  }
  if (!resource_json.empty()) {
    if (need_comma) out_ += ',';
    out_ += "\"resource\":";
    out_ += resource_json;
    need_comma = true;
  }
  for (const auto& kv : extra) {
    if (need_comma) out_ += ',';
    out_ += json::serialize(json::string(kv.key()));
    out_ += ':';
    out_ += json::serialize(kv.value());
    need_comma = true;
  }
  out_ += '}';
}

std::string BundleWriter::Finish() {
  if (links_open_) out_ += ']';
  if (entries_open_) out_ += ']';
  out_ += '}';
  return std::move(out_);
}

namespace {

std::string Encode(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

std::string QueryString(const Params& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    q += q.empty() ? "?" : "&";
    q += Encode(k) + "=" + Encode(v);
  }
  return q;
}

const char* ResponseStatus(const store::VersionRecord& v) {
  if (v.deleted) return "204 No Content";
  return v.version == 1 ? "201 Created" : "200 OK";
}

}  // namespace

Result<std::string> HistoryBundle(store::ReadView& view, const RequestContext& ctx,
                                  const FhirRequest& req, const std::string& type,
                                  const std::string& id) {
  store::HistoryQuery q;
  q.type = type;
  q.id = id;
  Params kept;  // parameters carried into paging links
  for (const auto& [k, v] : req.query) {
    if (k == "_count") {
      ASSIGN_OR_RETURN(int64_t n, search::ParseNonNegative(k, v));
      q.count = std::min<int64_t>(n, search::kMaxCount);
      kept.emplace_back(k, v);
    } else if (k == "_since") {
      auto ts = ParseFhirDateTime(v);
      if (!ts.ok()) return Status::Invalid(ts.status().message(), "_since");
      q.since = *ts;
      kept.emplace_back(k, v);
    } else if (k == "_at") {
      auto ts = ParseFhirDateTime(v);
      if (!ts.ok()) return Status::Invalid(ts.status().message(), "_at");
      q.at = *ts;
      kept.emplace_back(k, v);
    } else if (k == "_before") {
      ASSIGN_OR_RETURN(q.before_seq, search::ParseNonNegative(k, v));
    } else if (k == "_format" || k == "_pretty") {
      kept.emplace_back(k, v);
    } else if (req.Header("prefer").find("handling=strict") != std::string::npos) {
      return Status::Invalid("unknown history parameter '" + k + "'", k);
    }
  }
  ASSIGN_OR_RETURN(store::HistoryPage page, view.History(q));
  std::string path = ctx.base_url + "/" + req.path;
  BundleWriter w("history", page.total);
  Params self = kept;
  if (q.before_seq) self.emplace_back("_before", std::to_string(*q.before_seq));
  w.Link("self", path + QueryString(self));
  if (page.next_before_seq) {
    Params next = kept;
    next.emplace_back("_before", std::to_string(*page.next_before_seq));
    w.Link("next", path + QueryString(next));
  }
  for (const store::VersionRecord& v : page.entries) {
    json::object extra;
    std::string method = v.deleted ? "DELETE" : v.method;
    extra["request"] =
        json::object{{"method", method}, {"url", method == "POST" ? v.type : v.type + "/" + v.id}};
    extra["response"] = json::object{{"status", ResponseStatus(v)},
                                     {"etag", ETag(v.version)},
                                     {"lastModified", FormatInstant(v.last_updated)}};
    w.Entry(ctx.base_url + "/" + v.type + "/" + v.id,
            v.deleted ? std::string() : WithVersionMeta(v.json, v.version, v.last_updated), extra);
  }
  return w.Finish();
}

Result<std::string> SearchBundle(store::ReadView& view, const fhir::Model& model,
                                 const RequestContext& ctx, const FhirRequest& req,
                                 const std::string& type, const Params& params) {
  bool strict = req.Header("prefer").find("handling=strict") != std::string::npos;
  ASSIGN_OR_RETURN(search::ParsedSearch parsed, search::ParseSearch(model, type, params, strict));
  bool count_only = false;
  for (const auto& [k, v] : params) {
    if (k == "_summary" && v == "count") count_only = true;
  }
  if (count_only) {
    parsed.query.count = 0;
    parsed.query.want_total = true;
  }
  ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
  std::string path = ctx.base_url + "/" + (type.empty() ? std::string() : type);
  Params self = parsed.used;
  if (!count_only) self.emplace_back("_count", std::to_string(parsed.query.count));
  if (count_only) self.emplace_back("_summary", "count");
  if (parsed.query.offset) self.emplace_back("_offset", std::to_string(parsed.query.offset));
  BundleWriter w("searchset", page.total);
  w.Link("self", path + QueryString(self));
  if (page.has_more) {
    Params next = parsed.used;
    next.emplace_back("_count", std::to_string(parsed.query.count));
    next.emplace_back("_offset", std::to_string(parsed.query.offset + parsed.query.count));
    w.Link("next", path + QueryString(next));
  }
  if (parsed.query.offset > 0) {
    Params prev = parsed.used;
    prev.emplace_back("_count", std::to_string(parsed.query.count));
    prev.emplace_back(
        "_offset", std::to_string(std::max<int64_t>(0, parsed.query.offset - parsed.query.count)));
    w.Link("previous", path + QueryString(prev));
  }
  for (const store::VersionRecord& v : page.resources) {
    w.Entry(ctx.base_url + "/" + v.type + "/" + v.id,
            WithVersionMeta(v.json, v.version, v.last_updated),
            json::object{{"search", json::object{{"mode", "match"}}}});
  }
  if (!parsed.ignored.empty()) {
    std::vector<Issue> issues;
    for (const std::string& why : parsed.ignored) {
      Issue i;
      i.severity = Issue::Severity::kWarning;
      i.code = "not-supported";
      i.diagnostics = "ignored search parameter " + why;
      issues.push_back(std::move(i));
    }
    std::string oo = SerializeJson(
        OperationOutcomeJson(Status::WithIssues(StatusCode::kInvalid, std::move(issues))));
    w.Entry("", oo, json::object{{"search", json::object{{"mode", "outcome"}}}});
  }
  return w.Finish();
}

}  // namespace taproot::api::internal
