#include "api/engine.h"

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "api/access.h"
#include "api/bundle.h"
#include "api/capability.h"
#include "api/history.h"
#include "api/internal.h"
#include "api/outcome.h"
#include "api/subset.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "fhir/primitives.h"
#include "search/compartments.h"
#include "search/query.h"
#include "search/reindex.h"

namespace taproot::api {

using internal::OpResult;
using internal::Ops;

namespace {

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

FhirResponse JsonResponse(int status, std::string body) {
  FhirResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// Content negotiation: JSON only. XML asked for explicitly is refused with 406/415.
Status CheckFormats(const FhirRequest& req) {
  if (const std::string* f = req.Query("_format")) {
    if (!(*f == "json" || *f == "application/json" || *f == "application/fhir+json" ||
          Contains(*f, "json"))) {
      return Status::Make(StatusCode::kNotAcceptable,
                          "_format '" + *f +
                              "' is not supported; this server speaks JSON "
                              "(application/fhir+json)");
    }
  } else {
    const std::string& accept = req.Header("accept");
    if (!accept.empty() && !Contains(accept, "json") && !Contains(accept, "*/*") &&
        !Contains(accept, "application/*")) {
      return Status::Make(StatusCode::kNotAcceptable,
                          "Accept '" + accept +
                              "' cannot be met; this server speaks JSON "
                              "(application/fhir+json)");
    }
  }
  if (!req.body.empty()) {
    const std::string& ct = req.Header("content-type");
    bool form = Contains(ct, "application/x-www-form-urlencoded");
    if (!ct.empty() && !Contains(ct, "json") && !form) {
      return Status::Make(StatusCode::kUnsupportedMedia, "Content-Type '" + ct +
                                                             "' is not supported; send "
                                                             "application/fhir+json");
    }
  }
  return Status::Ok();
}

Status Allow(const RequestContext& ctx, Interaction interaction, std::string_view type,
             std::string_view id = {}, std::string_view operation = {}) {
  if (!ctx.guard) return Status::Ok();
  return ctx.guard->Allow(interaction, type, id, operation);
}

// The write transaction as a guarded request sees it: every version it stores passes the guard
// first (the interaction on the type, the patient the new content is about, and the patient of
// the version it replaces), whatever the route: single interactions, conditional forms and
// Bundle entries all end in Put().
class GuardedTxn : public store::WriteTxn {
 public:
  GuardedTxn(store::WriteTxn& txn, AccessGuard& guard) : txn_(txn), guard_(guard) {}

  Result<std::optional<store::VersionRecord>> ReadCurrent(const std::string& type,
                                                          const std::string& id) override {
    return txn_.ReadCurrent(type, id);
  }
  Result<std::optional<store::VersionRecord>> ReadVersion(const std::string& type,
                                                          const std::string& id,
                                                          int64_t version) override {
    return txn_.ReadVersion(type, id, version);
  }
  Result<store::SearchPage> Search(const store::SearchQuery& query) override {
    return txn_.Search(query);
  }
  Result<store::HistoryPage> History(const store::HistoryQuery& query) override {
    return txn_.History(query);
  }
  Result<std::optional<store::RequestRecord>> FindRequest(const std::string& id) override {
    return txn_.FindRequest(id);
  }
  Result<std::vector<store::VersionRecord>> ScanVersions(int64_t after, int64_t limit) override {
    return txn_.ScanVersions(after, limit);
  }
  Result<std::vector<std::string>> ReferringTypes(
      const std::string& target_type, const std::string& target_id,
      const std::vector<std::pair<std::string, std::string>>& links) override {
    return txn_.ReferringTypes(target_type, target_id, links);
  }
  int64_t NextTimestamp() override { return txn_.NextTimestamp(); }
  Status RecordRequest(const store::RequestRecord& record) override {
    return txn_.RecordRequest(record);
  }
  Status PutIndexRows(const std::string& type,
                      const std::vector<std::pair<int64_t, store::IndexEntry>>& rows) override {
    return Status::Make(StatusCode::kForbidden, "index rows are written by the server only");
  }
  Status Nested(const std::function<Status(store::WriteTxn&)>& fn) override {
    return txn_.Nested([&](store::WriteTxn& inner) -> Status {
      GuardedTxn guarded(inner, guard_);
      return fn(guarded);
    });
  }

  Status Put(const store::WriteRecord& record) override {
    const store::VersionRecord& v = record.version;
    Interaction interaction = v.deleted            ? Interaction::kDelete
                              : v.method == "POST" ? Interaction::kCreate
                                                   : Interaction::kUpdate;
    if (v.version == 1 && !v.deleted) interaction = Interaction::kCreate;
    RETURN_IF_ERROR(guard_.Allow(interaction, v.type, v.id));
    if (v.version > 1) {
      // The version being replaced: a caller may not take over, or delete, what it could not
      // have written.
      ASSIGN_OR_RETURN(auto current, txn_.ReadCurrent(v.type, v.id));
      if (current && !current->deleted) {
        std::string old_key;
        if (auto doc = ParseJson(current->json); doc.ok()) {
          old_key = search::PatientKey(v.type, v.id, {}, &*doc);
        }
        RETURN_IF_ERROR(guard_.Write(txn_, interaction, v.type, v.id, old_key));
      }
    }
    if (!v.deleted) {
      RETURN_IF_ERROR(guard_.Write(txn_, interaction, v.type, v.id, record.patient));
    }
    return txn_.Put(record);
  }

 private:
  store::WriteTxn& txn_;
  AccessGuard& guard_;
};

}  // namespace

std::string_view InteractionName(Interaction i) {
  switch (i) {
    case Interaction::kRead:
      return "read";
    case Interaction::kSearch:
      return "search";
    case Interaction::kHistory:
      return "history";
    case Interaction::kCreate:
      return "create";
    case Interaction::kUpdate:
      return "update";
    case Interaction::kDelete:
      return "delete";
    case Interaction::kOperation:
      return "operation";
  }
  return "unknown";
}

class Engine::Impl {
 public:
  Impl(store::Store& store, const fhir::Model& model, EngineOptions options)
      : store_(store), model_(model), options_(std::move(options)), ops_(model) {
    capability_ = BuildCapabilityStatement(model_, options_.software_name);
  }

  FhirResponse Handle(const RequestContext& ctx, const FhirRequest& req) {
    FhirResponse res = Dispatch(ctx, req);
    // A client that asks for plain JSON (and not FHIR JSON) gets that media type back.
    const std::string* format = req.Query("_format");
    const std::string& accept = req.Header("accept");
    bool plain = format ? (*format == "json" || *format == "application/json")
                        : (Contains(accept, "application/json") && !Contains(accept, "fhir+json"));
    if (plain) res.content_type = "application/json; charset=utf-8";
    return res;
  }

  static bool WantsLatest(const FhirRequest& req) {
    const std::string& cc = req.Header("cache-control");
    return !cc.empty() && Contains(cc, "no-cache");
  }

  FhirResponse Dispatch(const RequestContext& ctx, const FhirRequest& req) {
    if (Status st = CheckFormats(req); !st.ok()) return ErrorResponse(st);
    std::vector<std::string> parts = SplitPath(req.path);
    const std::string& m = req.method;
    if (m == "GET" || m == "HEAD") {
      if (parts.size() == 1 && parts[0] == "metadata") return JsonResponse(200, capability_);
      if (parts.size() == 1 && parts[0] == "$reindex") {
        if (Status st = Allow(ctx, Interaction::kOperation, "", "", "$reindex"); !st.ok()) {
          return ErrorResponse(st);
        }
        return ReindexStatus();
      }
      FhirResponse res;
      auto route = [&](store::ReadView& view) -> Status {
        res = RouteGet(view, ctx, req);
        return Status::Ok();
      };
      // read and vread are one query each; everything else needs a snapshot.
      bool one_query = (parts.size() == 2 && parts[1] != "_history") ||
                       (parts.size() == 4 && parts[2] == "_history");
      // Cache-Control: no-cache asks for the latest: the primary, never a replica.
      Status st = WantsLatest(req) ? store_.ReadPrimary(route)
                  : one_query      ? store_.ReadStatement(route)
                                   : store_.Read(route);
      if (!st.ok()) return ErrorResponse(st);
      return res;
    }
    if (m == "POST" && ((parts.size() == 1 && parts[0] == "$reindex") ||
                        (parts.size() == 2 && parts[1] == "$reindex"))) {
      std::string type = parts.size() == 2 ? parts[0] : "";
      if (!type.empty()) {
        if (Status st = CheckType(type); !st.ok()) return ErrorResponse(st);
      }
      if (Status st = Allow(ctx, Interaction::kOperation, type, "", "$reindex"); !st.ok()) {
        return ErrorResponse(st);
      }
      return StartReindex(ctx, type);
    }
    if (m == "POST" && parts.size() == 2 && parts[1] == "_search") {
      if (Status st = Allow(ctx, Interaction::kSearch, parts[0]); !st.ok())
        return ErrorResponse(st);
      return SearchPost(ctx, req, parts[0]);
    }
    if (m == "POST" && parts.size() == 1 && parts[0] == "_search") {
      if (Status st = Allow(ctx, Interaction::kSearch, ""); !st.ok()) return ErrorResponse(st);
      return SearchPost(ctx, req, "");
    }
    if (m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE") return Write(ctx, req, parts);
    return ErrorResponse(
        Status::Make(StatusCode::kMethodNotAllowed, "method " + m + " is not supported"));
  }

  const std::string& capability() const { return capability_; }

 private:
  Status CheckType(const std::string& type) const {
    if (model_.FindResource(type)) return Status::Ok();
    return Status::Make(StatusCode::kNotFound,
                        "'" + type.substr(0, 64) + "' is not an R4 resource type", {},
                        "not-supported");
  }

  FhirResponse ReadResponse(store::ReadView& view, const RequestContext& ctx,
                            const FhirRequest& req, Result<OpResult> r) {
    if (!r.ok()) return ErrorResponse(r.status());
    auto released = internal::Release(view, ctx, r->type, r->id, r->json);
    if (!released.ok()) return ErrorResponse(released.status());
    if (!*released) {
      return ErrorResponse(Status::Make(
          StatusCode::kForbidden,
          "access to " + r->type + "/" + r->id + " is not allowed for this user", {}, "forbidden"));
    }
    FhirResponse res;
    res.status = 200;
    std::string etag = internal::ETag(r->version);
    res.SetHeader("ETag", etag);
    res.SetHeader("Last-Modified", FormatHttpDate(r->last_updated));
    const std::string& inm = req.Header("if-none-match");
    if (!inm.empty() && (inm == etag || inm == "\"" + std::to_string(r->version) + "\"")) {
      res.status = 304;
      return res;
    }
    res.body = std::move(r->json);
    // _summary and _elements apply to reads too.
    if (!req.query.empty()) {
      auto subset = internal::ParseSubset(req.query);
      if (!subset.ok()) return ErrorResponse(subset.status());
      res.body = internal::ApplySubset(model_, res.body, *subset);
    }
    return res;
  }

  // GETs against a view; also used for GET entries inside a Bundle.
  FhirResponse RouteGet(store::ReadView& view, const RequestContext& ctx, const FhirRequest& req) {
    std::vector<std::string> parts = SplitPath(req.path);
    size_t n = parts.size();
    if (n == 1 && parts[0] == "metadata") return JsonResponse(200, capability_);
    if (n >= 1 && parts[0] != "_history") {
      if (Status st = CheckType(parts[0]); !st.ok()) return ErrorResponse(st);
    }
    if (Status st = AllowGet(ctx, parts); !st.ok()) return ErrorResponse(st);
    if (n == 0) return Search(view, ctx, req, "", req.query);
    if (n == 1 && parts[0] == "_history") return History(view, ctx, req, "", "");
    const std::string& type = parts[0];
    if (n == 1) return Search(view, ctx, req, type, req.query);
    if (n == 2 && parts[1] == "_history") return History(view, ctx, req, type, "");
    if (n == 2) return ReadResponse(view, ctx, req, ops_.Read(view, type, parts[1]));
    if (n == 3 && parts[2] == "_history") return History(view, ctx, req, type, parts[1]);
    if (n == 3 && type == "Patient" && parts[2] == "$everything") {
      auto bundle = internal::EverythingBundle(view, ctx, parts[1], req.query);
      if (!bundle.ok()) return ErrorResponse(bundle.status());
      return JsonResponse(200, std::move(bundle).value());
    }
    if (n == 3 && search::IsCompartment(type)) {  // compartment search: Patient/123/Observation
      if (Status st = CheckType(parts[2]); !st.ok()) return ErrorResponse(st);
      internal::Compartment compartment{type, parts[1]};
      auto bundle =
          internal::SearchBundle(view, model_, ctx, req, parts[2], req.query, &compartment);
      if (!bundle.ok()) return ErrorResponse(bundle.status());
      return JsonResponse(200, std::move(bundle).value());
    }
    if (n == 4 && parts[2] == "_history") {
      auto v = internal::ParseETagVersion(parts[3]);
      if (!v.ok()) return ErrorResponse(Status::NotFound("'" + parts[3] + "' is not a version"));
      return ReadResponse(view, ctx, req, ops_.VRead(view, type, parts[1], *v));
    }
    return ErrorResponse(Status::NotFound("no such endpoint: " + req.path));
  }

  // The guard's question for a GET route, asked before anything is read.
  static Status AllowGet(const RequestContext& ctx, const std::vector<std::string>& parts) {
    size_t n = parts.size();
    if (!ctx.guard) return Status::Ok();
    if (n == 0) return Allow(ctx, Interaction::kSearch, "");
    if (n == 1 && parts[0] == "_history") return Allow(ctx, Interaction::kHistory, "");
    const std::string& type = parts[0];
    if (n == 1) return Allow(ctx, Interaction::kSearch, type);
    if (n == 2 && parts[1] == "_history") return Allow(ctx, Interaction::kHistory, type);
    if (n == 2) return Allow(ctx, Interaction::kRead, type, parts[1]);
    if (n == 3 && parts[2] == "_history") return Allow(ctx, Interaction::kHistory, type, parts[1]);
    if (n == 3 && parts[2] == "$everything") {
      return Allow(ctx, Interaction::kOperation, type, parts[1], "$everything");
    }
    if (n == 3) return Allow(ctx, Interaction::kSearch, parts[2]);  // compartment search
    if (n == 4) return Allow(ctx, Interaction::kRead, type, parts[1]);
    return Status::Ok();
  }

  FhirResponse History(store::ReadView& view, const RequestContext& ctx, const FhirRequest& req,
                       const std::string& type, const std::string& id) {
    if (!id.empty()) {
      auto current = view.ReadCurrent(type, id);
      if (!current.ok()) return ErrorResponse(current.status());
      if (!*current) return ErrorResponse(Status::NotFound(type + "/" + id + " is not known"));
    }
    auto bundle = internal::HistoryBundle(view, ctx, req, type, id);
    if (!bundle.ok()) return ErrorResponse(bundle.status());
    return JsonResponse(200, std::move(bundle).value());
  }

  FhirResponse Search(store::ReadView& view, const RequestContext& ctx, const FhirRequest& req,
                      const std::string& type, const Params& params) {
    auto bundle = internal::SearchBundle(view, model_, ctx, req, type, params);
    if (!bundle.ok()) return ErrorResponse(bundle.status());
    return JsonResponse(200, std::move(bundle).value());
  }

  FhirResponse SearchPost(const RequestContext& ctx, const FhirRequest& req,
                          const std::string& type) {
    if (!type.empty()) {
      if (Status st = CheckType(type); !st.ok()) return ErrorResponse(st);
    }
    if (!Contains(req.Header("content-type"), "application/x-www-form-urlencoded")) {
      return ErrorResponse(Status::Make(StatusCode::kUnsupportedMedia,
                                        "_search by POST needs an "
                                        "application/x-www-form-urlencoded body"));
    }
    auto form = search::ParseQueryString(req.body);
    if (!form.ok()) return ErrorResponse(form.status());
    Params params = req.query;
    params.insert(params.end(), form->begin(), form->end());
    FhirResponse res;
    auto run = [&](store::ReadView& view) -> Status {
      res = Search(view, ctx, req, type, params);
      return Status::Ok();
    };
    Status st = WantsLatest(req) ? store_.ReadPrimary(run) : store_.Read(run);
    return st.ok() ? res : ErrorResponse(st);
  }

  // Every write goes through here: one store transaction, with the X-Request-ID log checked and
  // written inside it, so a retried request is answered from the log and applied once.
  FhirResponse Write(const RequestContext& ctx, const FhirRequest& req,
                     const std::vector<std::string>& parts) {
    std::string fingerprint = req.method + " " + req.path + "?" + req.raw_query;
    if (ctx.client_request_id) {
      std::optional<store::RequestRecord> seen;
      // The first attempt may have gone to another node a moment ago: ask the primary.
      Status st = store_.ReadPrimary([&](store::ReadView& view) -> Status {
        ASSIGN_OR_RETURN(seen, view.FindRequest(ctx.request_id));
        return Status::Ok();
      });
      if (!st.ok()) return ErrorResponse(st);
      if (seen) return Replay(*seen, fingerprint);
    }
    // Preparation (parsing, validation, serialisation, compression, and for Bundles the
    // resolution of conditional references against a snapshot) runs here, in parallel across
    // requests; the writer only checks what may have changed and stores. If a snapshot went
    // stale in between, the writer aborts and the request is prepared again. On a store shared
    // by several nodes (PostgreSQL), a write that lost a race to another node's write of the same
    // resource aborts too: with many writers on one resource, each round lets one through, so
    // the retries back off a little, at random, to spread the next round out.
    FhirResponse res;
    Status st;
    static constexpr int kAttempts = 40;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      if (attempt > 0) {
        thread_local std::minstd_rand rng(std::random_device{}());
        int max_us = std::min(200 * attempt, 5000);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % (max_us + 1)));
      }
      auto prepared = Prepare(ctx, req, parts);
      if (!prepared.ok()) return ErrorResponse(prepared.status());
      st = WriteOnce(ctx, fingerprint, *prepared, res);
      if (st.code() != StatusCode::kAborted) break;
    }
    if (!st.ok()) return ErrorResponse(st);
    return res;
  }

  using TxnFn = std::function<Result<FhirResponse>(store::WriteTxn&)>;

  Status WriteOnce(const RequestContext& ctx, const std::string& fingerprint, TxnFn& fn,
                   FhirResponse& res) {
    return store_.Write([&](store::WriteTxn& raw) -> Status {
      std::optional<GuardedTxn> guarded;
      if (ctx.guard) guarded.emplace(raw, *ctx.guard);
      store::WriteTxn& txn = guarded ? static_cast<store::WriteTxn&>(*guarded) : raw;
      if (ctx.client_request_id) {
        ASSIGN_OR_RETURN(auto seen, txn.FindRequest(ctx.request_id));
        if (seen) {
          res = Replay(*seen, fingerprint);
          return Status::Ok();
        }
      }
      ASSIGN_OR_RETURN(res, fn(txn));
      if (ctx.client_request_id && res.status < 300) {
        store::RequestRecord rec;
        rec.request_id = ctx.request_id;
        rec.fingerprint = fingerprint;
        rec.status = res.status;
        json::object headers;
        for (const auto& [k, v] : res.headers) headers[k] = v;
        rec.headers_json = json::serialize(headers);
        rec.body = res.body;
        RETURN_IF_ERROR(txn.RecordRequest(rec));
      }
      return Status::Ok();
    });
  }

  FhirResponse Replay(const store::RequestRecord& rec, const std::string& fingerprint) {
    if (rec.fingerprint != fingerprint) {
      return ErrorResponse(Status::Conflict(
          "X-Request-ID was already used for a different request (" + rec.fingerprint + ")"));
    }
    FhirResponse res;
    res.status = rec.status;
    res.body = rec.body;
    auto headers = ParseJson(rec.headers_json);
    if (headers.ok() && headers->is_object()) {
      for (const auto& kv : headers->get_object()) {
        if (kv.value().is_string())
          res.SetHeader(std::string(kv.key()), std::string(kv.value().get_string()));
      }
    }
    res.SetHeader("X-Replayed", "true");
    return res;
  }

  Result<std::optional<int64_t>> IfMatch(const FhirRequest& req) {
    const std::string& h = req.Header("if-match");
    if (h.empty()) return std::optional<int64_t>();
    ASSIGN_OR_RETURN(int64_t v, internal::ParseETagVersion(h));
    return std::optional<int64_t>(v);
  }

  Result<TxnFn> Prepare(const RequestContext& ctx, const FhirRequest& req,
                        const std::vector<std::string>& parts) {
    const std::string& m = req.method;
    size_t n = parts.size();
    auto wrap = [this, &ctx, &req](auto fn) -> TxnFn {
      return [this, &ctx, &req,
              fn = std::move(fn)](store::WriteTxn& txn) mutable -> Result<FhirResponse> {
        ASSIGN_OR_RETURN(OpResult op, fn(txn));
        return internal::WriteResponse(ctx, req, op);
      };
    };
    if (n == 0 && m == "POST") {
      ASSIGN_OR_RETURN(auto plan,
                       internal::PlanBundle(model_, ctx, req.body, options_.max_bundle_entries));
      RETURN_IF_ERROR(internal::PrepareBundle(store_, ops_, plan));
      auto shared = std::make_shared<internal::BundlePlan>(std::move(plan));
      return TxnFn([this, &ctx, &req, shared](store::WriteTxn& txn) -> Result<FhirResponse> {
        auto get = [this, &ctx](store::ReadView& view, const FhirRequest& sub) {
          return RouteGet(view, ctx, sub);
        };
        ASSIGN_OR_RETURN(std::string body,
                         internal::ExecuteBundle(txn, ops_, ctx, req, *shared, get));
        return JsonResponse(200, std::move(body));
      });
    }
    if (n == 0)
      return Status::Make(StatusCode::kMethodNotAllowed, m + " is not allowed on the base");
    const std::string type = parts[0];
    RETURN_IF_ERROR(CheckType(type));
    // Refused before the body is even parsed; the writer asks again per version (GuardedTxn).
    RETURN_IF_ERROR(Allow(ctx,
                          m == "POST"     ? Interaction::kCreate
                          : m == "DELETE" ? Interaction::kDelete
                                          : Interaction::kUpdate,
                          type, n >= 2 ? parts[1] : std::string()));
    ASSIGN_OR_RETURN(std::optional<int64_t> if_match, IfMatch(req));
    if (n == 1 && m == "POST") {
      ASSIGN_OR_RETURN(json::object res, internal::ParseResource(model_, req.body, type));
      auto prepared = std::make_shared<internal::PreparedResource>(
          internal::PrepareResource(model_, type, NewUuid(), std::move(res)));
      std::string if_none_exist = req.Header("if-none-exist");
      return wrap([this, &ctx, prepared, if_none_exist](store::WriteTxn& txn) -> Result<OpResult> {
        ASSIGN_OR_RETURN(OpResult op, ops_.Create(txn, *prepared, if_none_exist));
        if (op.status == 200) return internal::ReleaseMatch(txn, ctx, std::move(op));
        return op;
      });
    }
    if (n == 1 && (m == "PUT" || m == "DELETE" || m == "PATCH")) {
      if (req.raw_query.empty()) {
        return Status::Make(StatusCode::kMethodNotAllowed,
                            m + " on a type needs search criteria (a conditional " +
                                (m == "PUT"      ? "update"
                                 : m == "DELETE" ? "delete"
                                                 : "patch") +
                                ")");
      }
      std::string query = ConditionalQuery(req);
      if (m == "PUT") {
        ASSIGN_OR_RETURN(json::object res, internal::ParseResource(model_, req.body, type));
        std::string id(GetString(res, "id"));
        auto prepared = std::make_shared<internal::PreparedResource>(internal::PrepareResource(
            model_, type, id.empty() ? NewUuid() : id, std::move(res), /*keep_resource=*/true));
        return wrap([this, query, prepared, if_match](store::WriteTxn& txn) {
          return ops_.ConditionalUpdate(txn, query, *prepared, if_match);
        });
      }
      if (m == "DELETE") {
        return wrap([this, type, query](store::WriteTxn& txn) {
          return ops_.ConditionalDelete(txn, type, query);
        });
      }
      ASSIGN_OR_RETURN(json::value patch, ParsePatch(req));
      return wrap([this, type, query, patch, if_match](store::WriteTxn& txn) -> Result<OpResult> {
        ASSIGN_OR_RETURN(auto ids, ops_.Match(txn, type, query));
        if (ids.size() != 1) {
          return Status::PreconditionFailed("conditional patch criteria matched " +
                                            std::to_string(ids.size()) + " resources; need one");
        }
        return ops_.Patch(txn, type, ids[0], patch, if_match);
      });
    }
    if (n == 2) {
      const std::string id = parts[1];
      if (!fhir::IsValidId(id)) {
        return Status::Invalid("'" + id.substr(0, 80) + "' is not a valid resource id");
      }
      if (m == "PUT") {
        ASSIGN_OR_RETURN(json::object res, internal::ParseResource(model_, req.body, type));
        auto prepared = std::make_shared<internal::PreparedResource>(
            internal::PrepareResource(model_, type, id, std::move(res)));
        return wrap([this, prepared, if_match](store::WriteTxn& txn) {
          return ops_.Update(txn, *prepared, if_match);
        });
      }
      if (m == "DELETE") {
        return wrap([this, type, id, if_match](store::WriteTxn& txn) {
          return ops_.Delete(txn, type, id, if_match);
        });
      }
      if (m == "PATCH") {
        ASSIGN_OR_RETURN(json::value patch, ParsePatch(req));
        return wrap([this, type, id, patch, if_match](store::WriteTxn& txn) {
          return ops_.Patch(txn, type, id, patch, if_match);
        });
      }
    }
    return Status::Make(StatusCode::kMethodNotAllowed, m + " is not supported on " + req.path);
  }

  // The conditional criteria without formatting parameters.
  static std::string ConditionalQuery(const FhirRequest& req) {
    std::string out;
    size_t start = 0;
    const std::string& q = req.raw_query;
    while (start <= q.size()) {
      size_t amp = q.find('&', start);
      if (amp == std::string::npos) amp = q.size();
      std::string part = q.substr(start, amp - start);
      if (!part.empty() && part.rfind("_format", 0) != 0 && part.rfind("_pretty", 0) != 0) {
        if (!out.empty()) out += '&';
        out += part;
      }
      start = amp + 1;
    }
    return out;
  }

  static Result<json::value> ParsePatch(const FhirRequest& req) {
    const std::string& ct = req.Header("content-type");
    if (!Contains(ct, "json-patch")) {
      return Status::Make(StatusCode::kUnsupportedMedia,
                          "PATCH needs Content-Type application/json-patch+json (RFC 6902)");
    }
    ASSIGN_OR_RETURN(json::value patch, ParseJson(req.body));
    if (!patch.is_array()) return Status::Invalid("a JSON Patch must be a JSON array");
    return patch;
  }

  // $reindex: POST [base]/$reindex or [base]/[type]/$reindex starts one background job (409 if
  // one runs); GET [base]/$reindex reports its state and progress as Parameters.
  FhirResponse StartReindex(const RequestContext& ctx, const std::string& type) {
    std::lock_guard lock(reindex_mu_);
    if (reindex_running_) {
      return ErrorResponse(Status::Make(StatusCode::kConflict, "a reindex is already running"));
    }
    if (reindex_thread_.joinable()) reindex_thread_.join();
    reindex_ = std::make_unique<search::ReindexProgress>();
    reindex_types_ = type.empty() ? "*" : type;
    reindex_started_ = NowMicros();
    reindex_finished_ = 0;
    reindex_status_ = Status::Ok();
    reindex_cancel_ = false;
    reindex_running_ = true;
    reindex_thread_ = std::thread([this, type] {
      std::vector<std::string> types;
      if (!type.empty()) types.push_back(type);
      Status st = search::Reindex(store_, model_, types, reindex_.get(), &reindex_cancel_);
      std::lock_guard lock(reindex_mu_);
      reindex_status_ = st;
      reindex_finished_ = NowMicros();
      reindex_running_ = false;
      if (st.ok()) {
        LogInfo("reindex of " + reindex_types_ + " done: " + std::to_string(reindex_->done) +
                " resources, " + std::to_string(reindex_->rows) + " index rows");
      } else {
        LogWarn("reindex of " + reindex_types_ + " failed: " + st.ToString());
      }
    });
    FhirResponse res = JsonResponse(202, ReindexStatusLocked());
    res.SetHeader("Content-Location", ctx.base_url + "/$reindex");
    return res;
  }

  FhirResponse ReindexStatus() {
    std::lock_guard lock(reindex_mu_);
    return JsonResponse(200, ReindexStatusLocked());
  }

  std::string ReindexStatusLocked() const {
    auto param = [](const std::string& name, json::value v, const char* kind) {
      return json::object{{"name", name}, {kind, std::move(v)}};
    };
    json::array params;
    std::string state = reindex_running_       ? "running"
                        : !reindex_            ? "idle"
                        : reindex_status_.ok() ? "completed"
                                               : "failed";
    params.push_back(param("state", json::string(state), "valueCode"));
    if (reindex_) {
      params.push_back(param("types", json::string(reindex_types_), "valueString"));
      params.push_back(param("total", json::value(reindex_->total.load()), "valueInteger"));
      params.push_back(param("done", json::value(reindex_->done.load()), "valueInteger"));
      params.push_back(param("rows", json::value(reindex_->rows.load()), "valueInteger"));
      params.push_back(
          param("started", json::string(FormatInstant(reindex_started_)), "valueInstant"));
      if (reindex_finished_) {
        params.push_back(
            param("finished", json::string(FormatInstant(reindex_finished_)), "valueInstant"));
      }
      if (!reindex_status_.ok()) {
        params.push_back(param("error", json::string(reindex_status_.message()), "valueString"));
      }
    }
    return SerializeJson(json::object{{"resourceType", "Parameters"}, {"parameter", params}});
  }

  store::Store& store_;
  const fhir::Model& model_;
  EngineOptions options_;
  Ops ops_;
  std::string capability_;

  std::mutex reindex_mu_;
  std::thread reindex_thread_;
  std::atomic<bool> reindex_cancel_{false};
  bool reindex_running_ = false;  // guarded by reindex_mu_, as are the fields below
  std::unique_ptr<search::ReindexProgress> reindex_;
  std::string reindex_types_;
  int64_t reindex_started_ = 0, reindex_finished_ = 0;
  Status reindex_status_;

 public:
  ~Impl() {
    reindex_cancel_ = true;
    if (reindex_thread_.joinable()) reindex_thread_.join();
  }
};

Engine::Engine(store::Store& store, const fhir::Model& model, EngineOptions options)
    : impl_(std::make_unique<Impl>(store, model, std::move(options))) {}
Engine::~Engine() = default;

FhirResponse Engine::Handle(const RequestContext& ctx, const FhirRequest& req) {
  return impl_->Handle(ctx, req);
}

const std::string& Engine::CapabilityStatement() const { return impl_->capability(); }

}  // namespace taproot::api
