#include "api/bundle.h"

#include <algorithm>
#include <boost/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "api/bundle_writer.h"
#include "api/outcome.h"
#include "common/base64.h"
#include "common/clock.h"
#include "common/ids.h"
#include "fhir/primitives.h"
#include "fhir/validator.h"
#include "search/query.h"

namespace taproot::api::internal {
namespace {

int MethodRank(const std::string& m) {
  if (m == "DELETE") return 0;
  if (m == "POST") return 1;
  if (m == "PUT" || m == "PATCH") return 2;
  return 3;  // GET, HEAD
}

// Splits an entry URL into type, id, version and query. Absolute URLs on this server's base
// are accepted too.
Status ParseEntryUrl(const fhir::Model& model, const RequestContext& ctx, BundleEntryPlan& e) {
  std::string url = e.url;
  if (!ctx.base_url.empty() && url.rfind(ctx.base_url + "/", 0) == 0) {
    url = url.substr(ctx.base_url.size() + 1);
  }
  size_t q = url.find('?');
  std::string path = url.substr(0, q);
  if (q != std::string::npos) e.query = url.substr(q + 1);
  if (!path.empty() && path.front() == '/') path.erase(0, 1);
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string::npos ? path.npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.empty() || parts[0].empty()) {
    if (e.method == "GET") return Status::Ok();  // whole-system GET (search or history)
    return Status::Invalid("request.url '" + e.url + "' names no resource type");
  }
  e.type = parts[0];
  if (e.type != "_history" && e.type != "metadata" && !model.FindResource(e.type)) {
    return Status::Invalid("'" + e.type + "' in request.url is not an R4 resource type");
  }
  if (parts.size() >= 2) e.id = parts[1];
  if (parts.size() == 4 && parts[2] == "_history") {
    auto v = ParseETagVersion(parts[3]);
    if (!v.ok()) return Status::Invalid("bad version in request.url '" + e.url + "'");
    e.version = *v;
  }
  if (!e.id.empty() && e.id != "_history" && e.id != "_search" && !fhir::IsValidId(e.id)) {
    return Status::Invalid("'" + e.id + "' in request.url is not a valid id");
  }
  if (e.method == "POST" && (parts.size() != 1 || !e.query.empty())) {
    return Status::Invalid("a POST entry's request.url must be a resource type");
  }
  if ((e.method == "PUT" || e.method == "PATCH" || e.method == "DELETE") && parts.size() > 2) {
    return Status::Invalid("request.url '" + e.url + "' is not valid for " + e.method);
  }
  if ((e.method == "PUT" || e.method == "PATCH" || e.method == "DELETE") && e.id.empty() &&
      e.query.empty()) {
    return Status::Invalid(e.method + " needs Type/id or Type?criteria in request.url");
  }
  return Status::Ok();
}

// Rewrites references to bundle-local fullUrls and resolves conditional references.
// Resolves a conditional reference ("Organization?identifier=x|y") to "Type/id", or "" when it
// matches none or several. Results are memoised per Bundle.
Result<std::string> ResolveConditional(store::ReadView& view, const Ops& ops,
                                       const std::string& ref,
                                       std::map<std::string, std::string>& cache) {
  auto it = cache.find(ref);
  if (it != cache.end()) return it->second;
  size_t q = ref.find('?');
  std::string type = ref.substr(0, q);
  ASSIGN_OR_RETURN(auto matches, ops.Match(view, type, std::string_view(ref).substr(q + 1)));
  std::string out = matches.size() == 1 ? type + "/" + matches[0] : std::string();
  cache.emplace(ref, out);
  return out;
}

// Rewrites references to bundle-local fullUrls and resolves conditional references. With
// `late_urls`, a reference to one of them sets *late instead of failing.
Status RewriteReferences(store::ReadView& view, const Ops& ops, json::value& v,
                         const std::unordered_map<std::string, std::string>& ids,
                         const std::string& where, std::map<std::string, std::string>& cache,
                         const std::unordered_set<std::string>* late_urls = nullptr,
                         bool* late = nullptr) {
  if (v.is_array()) {
    for (auto& item : v.get_array()) {
      RETURN_IF_ERROR(RewriteReferences(view, ops, item, ids, where, cache, late_urls, late));
    }
    return Status::Ok();
  }
  if (!v.is_object()) return Status::Ok();
  for (auto& kv : v.get_object()) {
    if (kv.key() == "reference" && kv.value().is_string()) {
      std::string ref(kv.value().get_string());
      auto it = ids.find(ref);
      if (it != ids.end()) {
        kv.value() = it->second;
        continue;
      }
      if (late_urls && late_urls->count(ref)) {
        *late = true;
        continue;
      }
      if (ref.rfind("urn:uuid:", 0) == 0 || ref.rfind("urn:oid:", 0) == 0) {
        return Status::Invalid("reference '" + ref + "' matches no fullUrl in the Bundle", where);
      }
      size_t q = ref.find('?');
      if (q != std::string::npos && ref.find('/') > q) {
        if (!ops.model().FindResource(ref.substr(0, q))) {
          return Status::Invalid("conditional reference '" + ref + "' names no resource type",
                                 where);
        }
        ASSIGN_OR_RETURN(std::string target, ResolveConditional(view, ops, ref, cache));
        if (target.empty()) {
          return Status::Make(
              StatusCode::kPreconditionFailed,
              "conditional reference '" + ref + "' must match exactly one resource, and does not",
              where, "not-found");
        }
        kv.value() = target;
      }
      continue;
    }
    RETURN_IF_ERROR(RewriteReferences(view, ops, kv.value(), ids, where, cache, late_urls, late));
  }
  return Status::Ok();
}

json::object ErrorEntry(const Status& st) {
  return json::object{{"response", json::object{{"status", StatusLine(HttpStatusFor(st.code()))},
                                                {"outcome", OperationOutcomeJson(st)}}}};
}

}  // namespace

std::string StatusLine(int status) {
  switch (status) {
    case 200:
      return "200 OK";
    case 201:
      return "201 Created";
    case 204:
      return "204 No Content";
    case 304:
      return "304 Not Modified";
    case 400:
      return "400 Bad Request";
    case 401:
      return "401 Unauthorized";
    case 403:
      return "403 Forbidden";
    case 404:
      return "404 Not Found";
    case 405:
      return "405 Method Not Allowed";
    case 409:
      return "409 Conflict";
    case 410:
      return "410 Gone";
    case 412:
      return "412 Precondition Failed";
    case 422:
      return "422 Unprocessable Entity";
    case 500:
      return "500 Internal Server Error";
    case 503:
      return "503 Service Unavailable";
    default:
      return std::to_string(status);
  }
}

Result<BundlePlan> PlanBundle(const fhir::Model& model, const RequestContext& ctx,
                              std::string_view body, int64_t max_entries) {
  ASSIGN_OR_RETURN(json::value doc, ParseJson(body));
  if (!doc.is_object() || GetString(doc.get_object(), "resourceType") != "Bundle") {
    return Status::Invalid("a batch or transaction must be a Bundle resource", "resourceType");
  }
  json::object& bundle = doc.get_object();
  std::string_view type = GetString(bundle, "type");
  if (type != "transaction" && type != "batch") {
    return Status::Invalid("Bundle.type must be 'transaction' or 'batch' to be processed, not '" +
                               std::string(type) + "'",
                           "Bundle.type");
  }
  BundlePlan plan;
  plan.transaction = type == "transaction";
  // Take the entry resources out so the envelope is validated on its own, and each entry's
  // resource separately (a bad entry fails only that entry in a batch).
  std::vector<std::optional<json::value>> resources;
  if (auto* entries = bundle.if_contains("entry"); entries && entries->is_array()) {
    if (static_cast<int64_t>(entries->get_array().size()) > max_entries) {
      return Status::Make(StatusCode::kTooLarge,
                          "the Bundle has more than " + std::to_string(max_entries) + " entries");
    }
    for (auto& e : entries->get_array()) {
      std::optional<json::value> r;
      if (e.is_object()) {
        if (auto* res = e.get_object().if_contains("resource")) {
          r = std::move(*res);
          e.get_object().erase("resource");
        }
      }
      resources.push_back(std::move(r));
    }
  }
  RETURN_IF_ERROR(fhir::ValidateResource(model, doc));
  if (!bundle.contains("entry")) return plan;
  json::array& entries = bundle.at("entry").get_array();
  std::unordered_map<std::string, size_t> full_urls;
  for (size_t i = 0; i < entries.size(); ++i) {
    json::object& e = entries[i].get_object();
    BundleEntryPlan p;
    p.index = i;
    std::string where = "Bundle.entry[" + std::to_string(i) + "]";
    p.full_url = std::string(GetString(e, "fullUrl"));
    auto* request = e.if_contains("request");
    if (!request || !request->is_object()) {
      p.error = Status::Invalid("the entry has no request", where + ".request");
    } else {
      const json::object& r = request->get_object();
      p.method = std::string(GetString(r, "method"));
      p.url = std::string(GetString(r, "url"));
      p.if_none_exist = std::string(GetString(r, "ifNoneExist"));
      if (std::string_view m = GetString(r, "ifMatch"); !m.empty()) {
        auto v = ParseETagVersion(m);
        if (v.ok()) {
          p.if_match = *v;
        } else {
          p.error = v.status().Annotate(where + ".request.ifMatch: ");
        }
      }
      if (p.error.ok()) {
        Status st = ParseEntryUrl(model, ctx, p);
        if (!st.ok()) p.error = st.Annotate(where + ".request.url: ");
      }
    }
    if (p.error.ok() && resources[i]) {
      if (p.method == "PATCH") {
        // R4 carries a JSON Patch in a Binary resource.
        const json::value& bin = *resources[i];
        if (!bin.is_object() || GetString(bin.get_object(), "resourceType") != "Binary") {
          p.error = Status::Invalid("a PATCH entry carries its JSON Patch in a Binary",
                                    where + ".resource");
        } else {
          auto data = Base64Decode(GetString(bin.get_object(), "data"));
          auto parsed = data.ok() ? ParseJson(*data) : Result<json::value>(data.status());
          if (parsed.ok()) {
            p.patch = std::move(parsed).value();
          } else {
            p.error = parsed.status().Annotate(where + ".resource.data: ");
          }
        }
      } else {
        Status st = fhir::ValidateResource(model, *resources[i]);
        if (!st.ok()) {
          std::vector<Issue> issues = st.issues();
          for (Issue& issue : issues)
            issue.expression =
                where + ".resource" +
                issue.expression.substr(issue.expression.find('.') == std::string::npos
                                            ? issue.expression.size()
                                            : issue.expression.find('.'));
          p.error = Status::WithIssues(StatusCode::kInvalid, std::move(issues));
        } else {
          json::object& obj = resources[i]->get_object();
          if (!p.type.empty() && GetString(obj, "resourceType") != p.type) {
            p.error =
                Status::Invalid("the resource is a " + std::string(GetString(obj, "resourceType")) +
                                    " but request.url names " + p.type,
                                where + ".resource");
          } else {
            p.resource = std::move(obj);
          }
        }
      }
    }
    if (p.error.ok() && (p.method == "POST" || p.method == "PUT") && !p.resource) {
      p.error = Status::Invalid(p.method + " needs a resource", where + ".resource");
    }
    if (p.error.ok() && p.method == "PATCH" && !p.patch) {
      p.error = Status::Invalid("PATCH needs a Binary holding a JSON Patch", where + ".resource");
    }
    if (p.error.ok() && p.method != "GET" && p.method != "HEAD" && p.method != "POST" &&
        p.method != "PUT" && p.method != "PATCH" && p.method != "DELETE") {
      p.error =
          Status::Invalid("unknown request.method '" + p.method + "'", where + ".request.method");
    }
    if (p.error.ok() && !p.full_url.empty() && plan.transaction) {
      if (!full_urls.emplace(p.full_url, i).second) {
        p.error = Status::Invalid("fullUrl '" + p.full_url + "' appears more than once",
                                  where + ".fullUrl");
      }
    }
    if (plan.transaction && !p.error.ok()) return p.error;
    plan.entries.push_back(std::move(p));
  }
  return plan;
}

Status PrepareBundle(store::Store& store, const Ops& ops, BundlePlan& plan) {
  std::unordered_map<std::string, std::string> local_ids;
  std::unordered_set<std::string> late_urls;
  for (BundleEntryPlan& e : plan.entries) {
    if (!e.error.ok()) continue;
    if (e.method == "POST") {
      e.id = NewUuid();  // used unless a conditional create matches
      if (!plan.transaction) continue;
      if (e.if_none_exist.empty()) {
        if (!e.full_url.empty()) local_ids[e.full_url] = e.type + "/" + e.id;
      } else {
        e.id.clear();  // decided in the writer
        if (!e.full_url.empty()) late_urls.insert(e.full_url);
      }
    } else if (e.method == "PUT" && plan.transaction && !e.full_url.empty()) {
      if (!e.id.empty()) {
        local_ids[e.full_url] = e.type + "/" + e.id;
      } else {
        late_urls.insert(e.full_url);
      }
    }
  }
  // From the primary: what it decides is checked again by the write, and a stale replica would
  // only make that check fail.
  return store.ReadPrimary([&](store::ReadView& view) -> Status {
    for (BundleEntryPlan& e : plan.entries) {
      if (!e.error.ok() || !e.resource || (e.method != "POST" && e.method != "PUT")) continue;
      std::string where = "Bundle.entry[" + std::to_string(e.index) + "].resource";
      json::value res(std::move(*e.resource));
      e.resource.reset();
      bool late = false;
      Status st = RewriteReferences(view, ops, res, local_ids, where, plan.assumptions,
                                    plan.transaction ? &late_urls : nullptr, &late);
      e.resource = std::move(res.get_object());
      if (!st.ok()) {
        if (st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kInternal) return st;
        if (plan.transaction) return st;
        e.error = st;
        continue;
      }
      if (late || (plan.transaction && e.method == "POST" && e.id.empty()) ||
          (e.method == "PUT" && e.id.empty() && plan.transaction)) {
        continue;  // finished inside the writer
      }
      std::string id = e.id;
      if (e.method == "PUT" && id.empty()) {
        // A conditional update in a batch: the body's id, or a new one if nothing matches.
        std::string_view body_id = GetString(*e.resource, "id");
        id = body_id.empty() ? NewUuid() : std::string(body_id);
      }
      if (e.method == "PUT" && !e.id.empty() && plan.transaction &&
          GetString(*e.resource, "id").empty()) {
        (*e.resource)["id"] = e.id;
      }
      e.prepared = PrepareResource(ops.model(), e.type, id, std::move(*e.resource),
                                   /*keep_resource=*/!e.query.empty());
      e.resource.reset();
    }
    return Status::Ok();
  });
}

Result<std::string> ExecuteBundle(store::WriteTxn& txn, const Ops& ops, const RequestContext& ctx,
                                  const FhirRequest& req, BundlePlan& plan, const GetRunner& get) {
  std::vector<BundleEntryPlan*> order;
  for (auto& e : plan.entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(),
                   [](const BundleEntryPlan* a, const BundleEntryPlan* b) {
                     return MethodRank(a->method) < MethodRank(b->method);
                   });
  bool representation = req.Header("prefer").find("return=representation") != std::string::npos;
  // The snapshot the bundle was prepared against must still hold for its conditional references.
  std::map<std::string, std::string> cache;
  for (const auto& [ref, expected] : plan.assumptions) {
    ASSIGN_OR_RETURN(std::string now, ResolveConditional(txn, ops, ref, cache));
    if (now != expected) {
      return Status::Make(StatusCode::kAborted, "conditional reference '" + ref +
                                                    "' changed while the Bundle was "
                                                    "being prepared; retry");
    }
  }
  std::vector<json::object> responses(plan.entries.size());
  std::vector<std::string> bodies(plan.entries.size());

  // Phase 1 (transaction): decide the id of every created or updated resource, so references to
  // fullUrls can be rewritten before anything is written.
  std::unordered_map<std::string, std::string> local_ids;
  std::vector<bool> matched_existing(plan.entries.size(), false);
  // Runs after the DELETEs (so conditional creates see their effect) and before any write that
  // could hold a reference.
  auto resolve_ids = [&]() -> Status {
    for (BundleEntryPlan* e : order) {
      std::string where = "Bundle.entry[" + std::to_string(e->index) + "]";
      if (e->method == "POST") {
        if (!e->if_none_exist.empty()) {
          ASSIGN_OR_RETURN(auto ids,
                           ops.Match(txn, e->type, e->if_none_exist, /*may_create=*/true));
          if (ids.size() > 1) {
            return Status::PreconditionFailed(where + ": ifNoneExist '" + e->if_none_exist +
                                              "' matches more than one " + e->type);
          }
          if (ids.size() == 1) {
            e->id = ids[0];
            matched_existing[e->index] = true;
          }
        }
        if (e->id.empty()) e->id = NewUuid();
      } else if (e->method == "PUT" && e->id.empty()) {
        ASSIGN_OR_RETURN(auto ids, ops.Match(txn, e->type, e->query, /*may_create=*/true));
        if (ids.size() > 1) {
          return Status::PreconditionFailed(where + ": '" + e->url + "' matches more than one " +
                                            e->type);
        }
        std::string_view body_id = GetString(*e->resource, "id");
        e->id = !ids.empty() ? ids[0] : !body_id.empty() ? std::string(body_id) : NewUuid();
        e->query.clear();
      }
      if (!e->full_url.empty() && !e->type.empty() && !e->id.empty() &&
          (e->method == "POST" || e->method == "PUT")) {
        local_ids[e->full_url] = e->type + "/" + e->id;
      }
    }
    return Status::Ok();
  };

  bool ids_resolved = !plan.transaction;
  for (BundleEntryPlan* e : order) {
    size_t i = e->index;
    if (!ids_resolved && e->method != "DELETE") {
      RETURN_IF_ERROR(resolve_ids());
      ids_resolved = true;
    }
    std::string where = "Bundle.entry[" + std::to_string(i) + "]";
    auto run = [&](store::WriteTxn& t) -> Status {
      RETURN_IF_ERROR(e->error);
      // A conditional create that matched writes nothing, so it needs no prepared resource.
      bool matched = plan.transaction && matched_existing[i];
      if (e->resource && !e->prepared && !matched && (e->method == "POST" || e->method == "PUT")) {
        // Finished here: it depends on a conditional create or update in this transaction.
        json::value res(std::move(*e->resource));
        e->resource.reset();
        RETURN_IF_ERROR(RewriteReferences(t, ops, res, local_ids, where + ".resource", cache));
        json::object obj = std::move(res.get_object());
        if (e->method == "PUT" && GetString(obj, "id").empty()) obj["id"] = e->id;
        std::string id = e->id.empty() ? NewUuid() : e->id;
        e->prepared = PrepareResource(ops.model(), e->type, id, std::move(obj));
      }
      Result<OpResult> r = Status::Internal("unreachable");
      if (e->method == "GET" || e->method == "HEAD") {
        FhirRequest sub;
        sub.method = "GET";
        sub.path = e->url.substr(0, e->url.find('?'));
        if (!ctx.base_url.empty() && sub.path.rfind(ctx.base_url + "/", 0) == 0) {
          sub.path = sub.path.substr(ctx.base_url.size() + 1);
        }
        sub.raw_query = e->query;
        ASSIGN_OR_RETURN(sub.query, search::ParseQueryString(e->query));
        FhirResponse res = get(t, sub);
        json::object response{{"status", StatusLine(res.status)}};
        if (auto* etag = res.FindHeader("ETag")) response["etag"] = *etag;
        if (res.status >= 400) {
          if (plan.transaction) {
            return Status::Make(
                res.status == 404 ? StatusCode::kNotFound : StatusCode::kInvalid,
                where + ": GET " + e->url + " failed with " + StatusLine(res.status));
          }
          auto oo = ParseJson(res.body);
          if (oo.ok()) response["outcome"] = std::move(oo).value();
        } else {
          bodies[i] = std::move(res.body);
        }
        responses[i] = json::object{{"response", std::move(response)}};
        return Status::Ok();
      }
      if (e->method == "POST") {
        if (plan.transaction && matched_existing[i]) {
          r = ops.Read(t, e->type, e->id);
          if (r.ok()) r->status = 200;
        } else {
          r = ops.Create(t, *e->prepared, plan.transaction ? "" : e->if_none_exist);
        }
        if (r.ok() && r->status == 200) r = ReleaseMatch(t, ctx, std::move(r).value());
      } else if (e->method == "PUT") {
        if (!e->query.empty()) {
          r = ops.ConditionalUpdate(t, e->query, *e->prepared, e->if_match);
        } else {
          r = ops.Update(t, *e->prepared, e->if_match);
        }
      } else if (e->method == "PATCH") {
        if (e->id.empty()) {
          ASSIGN_OR_RETURN(auto ids, ops.Match(t, e->type, e->query));
          if (ids.size() != 1) {
            return Status::PreconditionFailed("conditional patch '" + e->url + "' matched " +
                                              std::to_string(ids.size()) + " resources");
          }
          e->id = ids[0];
        }
        r = ops.Patch(t, e->type, e->id, *e->patch, e->if_match);
      } else if (e->method == "DELETE") {
        r = e->id.empty() ? ops.ConditionalDelete(t, e->type, e->query)
                          : ops.Delete(t, e->type, e->id, e->if_match);
      }
      if (!r.ok()) return r.status();
      const OpResult& op = *r;
      json::object response{{"status", StatusLine(op.status)}};
      if (op.version > 0) {
        if (op.status != 204) {
          response["location"] = op.type + "/" + op.id + "/_history/" + std::to_string(op.version);
        }
        response["etag"] = ETag(op.version);
        response["lastModified"] = FormatInstant(op.last_updated);
      }
      if (!op.information.empty()) response["outcome"] = InformationOutcome(op.information);
      responses[i] = json::object{{"response", std::move(response)}};
      if (representation) bodies[i] = op.Body();
      if (!op.id.empty()) {
        responses[i]["fullUrl"] = ctx.base_url + "/" + op.type + "/" + op.id;
      }
      return Status::Ok();
    };
    if (plan.transaction) {
      Status st = run(txn);
      if (!st.ok()) {
        return st.message().rfind("Bundle.entry[", 0) == 0 ? st : st.Annotate(where + ": ");
      }
    } else {
      Status st = txn.Nested(run);
      if (!st.ok()) responses[i] = ErrorEntry(st);
    }
  }

  BundleWriter w(plan.transaction ? "transaction-response" : "batch-response", std::nullopt);
  for (size_t i = 0; i < responses.size(); ++i) {
    std::string full_url;
    if (auto* f = responses[i].if_contains("fullUrl")) {
      full_url = std::string(f->get_string());
      responses[i].erase("fullUrl");
    }
    w.Entry(full_url, bodies[i], responses[i]);
  }
  return w.Finish();
}

}  // namespace taproot::api::internal
