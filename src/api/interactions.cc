// Single-resource interactions: create, read, vread, update, patch, delete and their
// conditional forms. See internal.h.
#include <boost/json.hpp>

#include "api/access.h"
#include "api/internal.h"
#include "api/outcome.h"
#include "common/clock.h"
#include "common/compress.h"
#include "common/ids.h"
#include "fhir/json_patch.h"
#include "fhir/primitives.h"
#include "fhir/validator.h"
#include "search/compartments.h"
#include "search/indexer.h"
#include "search/query.h"

namespace taproot::api::internal {

Result<json::object> ParseResource(const fhir::Model& model, std::string_view body,
                                   std::string_view expected_type) {
  if (body.empty()) return Status::Invalid("the request has no body; a resource is required");
  ASSIGN_OR_RETURN(json::value v, ParseJson(body));
  if (!v.is_object()) {
    return Status::Make(StatusCode::kInvalid, "the body must be a JSON object (a FHIR resource)",
                        {}, "structure");
  }
  std::string_view type = GetString(v.get_object(), "resourceType");
  if (!expected_type.empty() && !type.empty() && type != expected_type) {
    return Status::Invalid("the resource is a " + std::string(type) + " but the URL names " +
                               std::string(expected_type),
                           "resourceType");
  }
  RETURN_IF_ERROR(fhir::ValidateResource(model, v));
  return std::move(v.get_object());
}

Result<int64_t> ParseETagVersion(std::string_view etag) {
  std::string_view s = etag;
  if (s.substr(0, 2) == "W/") s.remove_prefix(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  int64_t v = 0;
  if (s.empty()) return Status::Invalid("If-Match must be a version ETag such as W/\"3\"");
  for (char c : s) {
    if (c < '0' || c > '9' || v > (int64_t{1} << 50)) {
      return Status::Invalid("'" + std::string(etag) + "' is not a version ETag such as W/\"3\"");
    }
    v = v * 10 + (c - '0');
  }
  return v;
}

std::string ETag(int64_t version) { return "W/\"" + std::to_string(version) + "\""; }

Result<std::vector<std::string>> Ops::Match(store::ReadView& view, const std::string& type,
                                            std::string_view query, bool may_create) const {
  ASSIGN_OR_RETURN(search::Params params, search::ParseQueryString(query));
  if (params.empty()) {
    return Status::PreconditionFailed("a conditional operation needs search criteria");
  }
  ASSIGN_OR_RETURN(search::ParsedSearch parsed,
                   search::ParseSearch(model_, type, params, /*strict=*/true));
  if (parsed.used.empty()) {
    return Status::PreconditionFailed("a conditional operation needs search criteria");
  }
  parsed.query.offset = 0;
  parsed.query.count = 2;
  parsed.query.want_total = false;
  parsed.query.decides_create = may_create;
  ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
  std::vector<std::string> ids;
  for (auto& r : page.resources) ids.push_back(std::move(r.id));
  return ids;
}

PreparedResource PrepareResource(const fhir::Model& model, std::string type, std::string id,
                                 json::object resource, bool keep_resource) {
  // resourceType, id and meta first: readable, stable for clients that diff, and the layout
  // WithVersionMeta relies on.
  json::object meta;
  if (auto* m = resource.if_contains("meta"); m && m->is_object()) {
    meta = m->get_object();
    meta.erase("versionId");
    meta.erase("lastUpdated");
  }
  json::value doc(json::object{});
  json::object& out = doc.get_object();
  out.reserve(resource.size() + 3);
  out["resourceType"] = type;
  out["id"] = id;
  out["meta"] = std::move(meta);
  for (auto& kv : resource) {
    std::string_view k = kv.key();
    if (k == "resourceType" || k == "id" || k == "meta") continue;
    out[k] = kv.value();
  }
  PreparedResource p;
  p.text = json::serialize(out);
  p.compressed = ZstdCompress(p.text, 1);
  auto rows =
      std::make_shared<std::vector<store::IndexEntry>>(search::ExtractIndex(model, type, doc));
  // With every parameter indexed the rows hold the references already; only an
  // identifiers-only write (--no-search-index) needs the resource read again.
  p.patient = search::PatientKey(type, id, *rows, search::SearchIndexing() ? nullptr : &doc);
  p.index = std::move(rows);
  p.type = std::move(type);
  p.id = std::move(id);
  p.body_id = std::string(GetString(resource, "id"));
  if (keep_resource) p.resource = std::move(resource);
  return p;
}

Result<OpResult> Ops::WriteVersion(store::WriteTxn& txn, const PreparedResource& prepared,
                                   int64_t version, const std::string& method, int status) const {
  store::WriteRecord rec;
  rec.version.type = prepared.type;
  rec.version.id = prepared.id;
  rec.version.version = version;
  rec.version.last_updated = txn.NextTimestamp();
  rec.version.method = method;
  // Shared, not copied: the writer thread runs this.
  rec.compressed_body = prepared.compressed;
  rec.index = prepared.index;
  rec.patient = prepared.patient;
  RETURN_IF_ERROR(txn.Put(rec));
  OpResult r;
  r.status = status;
  r.type = prepared.type;
  r.id = prepared.id;
  r.version = version;
  r.last_updated = rec.version.last_updated;
  r.prepared_text = &prepared.text;
  return r;
}

std::string OpResult::Body() const {
  if (!json.empty() || !prepared_text) return json;
  return WithVersionMeta(*prepared_text, version, last_updated);
}

Result<OpResult> Ops::Create(store::WriteTxn& txn, const PreparedResource& prepared,
                             std::string_view if_none_exist) const {
  const std::string& type = prepared.type;
  if (!if_none_exist.empty()) {
    ASSIGN_OR_RETURN(auto ids, Match(txn, type, if_none_exist, /*may_create=*/true));
    if (ids.size() > 1) {
      return Status::PreconditionFailed("If-None-Exist '" + std::string(if_none_exist) +
                                        "' matches more than one " + type);
    }
    if (ids.size() == 1) {
      ASSIGN_OR_RETURN(OpResult existing, Read(txn, type, ids[0]));
      existing.status = 200;
      existing.information = "an existing " + type + " matched If-None-Exist; nothing was created";
      return existing;
    }
  }
  return WriteVersion(txn, prepared, 1, "POST", 201);
}

Result<OpResult> ReleaseMatch(store::ReadView& view, const RequestContext& ctx, OpResult op) {
  if (!ctx.guard) return op;
  ASSIGN_OR_RETURN(bool ok, ctx.guard->Release(view, op.type, op.id, op.json));
  if (!ok) {
    return Status::Make(StatusCode::kForbidden,
                        "an existing " + op.type +
                            " matches If-None-Exist, and this user may not "
                            "see it; nothing was created",
                        {}, "forbidden");
  }
  return op;
}

Result<OpResult> Ops::Update(store::WriteTxn& txn, const PreparedResource& prepared,
                             std::optional<int64_t> if_match, const std::string& method) const {
  const std::string& type = prepared.type;
  const std::string& id = prepared.id;
  const std::string& body_id = prepared.body_id;
  if (body_id.empty()) {
    return Status::Invalid("the resource in an update must have an id (the one in the URL)", "id");
  }
  if (body_id != id) {
    return Status::Invalid(
        "the resource id '" + body_id + "' does not match the id in the URL '" + id + "'",
        type + ".id");
  }
  ASSIGN_OR_RETURN(auto current, txn.ReadCurrent(type, id));
  int64_t next = current ? current->version + 1 : 1;
  if (if_match) {
    if (!current || current->deleted) {
      return Status::PreconditionFailed("If-Match was given but " + type + "/" + id +
                                        " does not exist");
    }
    if (*if_match != current->version) {
      return Status::PreconditionFailed("If-Match W/\"" + std::to_string(*if_match) +
                                        "\" does not match the current version W/\"" +
                                        std::to_string(current->version) + "\" of " + type + "/" +
                                        id);
    }
  }
  int status = current && !current->deleted ? 200 : 201;
  return WriteVersion(txn, prepared, next, method, status);
}

Result<OpResult> Ops::ConditionalUpdate(store::WriteTxn& txn, std::string_view query,
                                        const PreparedResource& prepared,
                                        std::optional<int64_t> if_match) const {
  const std::string type = prepared.type;
  ASSIGN_OR_RETURN(auto ids, Match(txn, type, query, /*may_create=*/true));
  if (ids.size() > 1) {
    return Status::PreconditionFailed("the conditional update criteria '" + std::string(query) +
                                      "' match more than one " + type);
  }
  const std::string& body_id = prepared.body_id;
  std::string id;
  if (ids.empty()) {
    id = body_id.empty() ? prepared.id : body_id;
    if (!body_id.empty()) {
      ASSIGN_OR_RETURN(auto existing, txn.ReadCurrent(type, id));
      if (existing && !existing->deleted) {
        return Status::Conflict(type + "/" + id +
                                " exists but does not match the conditional update criteria");
      }
    }
  } else {
    if (!body_id.empty() && body_id != ids[0]) {
      return Status::Invalid("the resource id '" + body_id +
                                 "' differs from the id of the matching resource '" + ids[0] + "'",
                             type + ".id");
    }
    id = ids[0];
  }
  if (id == prepared.id && !body_id.empty()) return Update(txn, prepared, if_match);
  // The id is part of the stored text: prepare again with the right one.
  json::object resource = prepared.resource;
  resource["id"] = id;
  PreparedResource again = PrepareResource(model_, type, id, std::move(resource));
  ASSIGN_OR_RETURN(OpResult r, Update(txn, again, if_match));
  r.json = r.Body();  // `again` dies here
  r.prepared_text = nullptr;
  return r;
}

Result<OpResult> Ops::Delete(store::WriteTxn& txn, const std::string& type, const std::string& id,
                             std::optional<int64_t> if_match) const {
  ASSIGN_OR_RETURN(auto current, txn.ReadCurrent(type, id));
  if (if_match && (!current || current->deleted || current->version != *if_match)) {
    return Status::PreconditionFailed("If-Match does not match the current version of " + type +
                                      "/" + id);
  }
  OpResult r;
  r.status = 204;
  r.type = type;
  r.id = id;
  if (!current || current->deleted) {
    // Deleting what is not there is not an error (R4 http.html#delete); nothing is written.
    if (current) {
      r.version = current->version;
      r.last_updated = current->last_updated;
    }
    r.information = current ? type + "/" + id + " was already deleted"
                            : type + "/" + id + " does not exist; nothing to delete";
    return r;
  }
  store::WriteRecord rec;
  rec.version.type = type;
  rec.version.id = id;
  rec.version.version = current->version + 1;
  rec.version.last_updated = txn.NextTimestamp();
  rec.version.deleted = true;
  rec.version.method = "DELETE";
  RETURN_IF_ERROR(txn.Put(rec));
  r.version = rec.version.version;
  r.last_updated = rec.version.last_updated;
  r.information = "deleted " + type + "/" + id;
  return r;
}

Result<OpResult> Ops::ConditionalDelete(store::WriteTxn& txn, const std::string& type,
                                        std::string_view query) const {
  ASSIGN_OR_RETURN(auto ids, Match(txn, type, query));
  if (ids.size() > 1) {
    return Status::PreconditionFailed("the conditional delete criteria '" + std::string(query) +
                                      "' match more than one " + type);
  }
  if (ids.empty()) {
    OpResult r;
    r.status = 204;
    r.type = type;
    r.information = "no " + type + " matched; nothing was deleted";
    return r;
  }
  return Delete(txn, type, ids[0], std::nullopt);
}

Result<OpResult> Ops::Patch(store::WriteTxn& txn, const std::string& type, const std::string& id,
                            const json::value& patch, std::optional<int64_t> if_match) const {
  ASSIGN_OR_RETURN(auto current, txn.ReadCurrent(type, id));
  if (!current) return Status::NotFound(type + "/" + id + " does not exist");
  if (current->deleted) return Status::Gone(type + "/" + id + " has been deleted");
  if (if_match && *if_match != current->version) {
    return Status::PreconditionFailed("If-Match W/\"" + std::to_string(*if_match) +
                                      "\" does not match the current version W/\"" +
                                      std::to_string(current->version) + "\"");
  }
  ASSIGN_OR_RETURN(json::value doc, ParseJson(WithVersionMeta(current->json, current->version,
                                                              current->last_updated)));
  ASSIGN_OR_RETURN(json::value patched, fhir::ApplyJsonPatch(doc, patch));
  if (!patched.is_object()) return Status::Unprocessable("the patch result is not a resource");
  json::object& obj = patched.get_object();
  if (GetString(obj, "resourceType") != type || GetString(obj, "id") != id) {
    return Status::Unprocessable("a patch must not change resourceType or id");
  }
  Status valid = fhir::ValidateResource(model_, patched);
  if (!valid.ok()) {
    return Status::WithIssues(StatusCode::kUnprocessable, valid.issues())
        .Annotate("the patched resource would be invalid: ");
  }
  PreparedResource prepared = PrepareResource(model_, type, id, std::move(obj));
  ASSIGN_OR_RETURN(OpResult r, WriteVersion(txn, prepared, current->version + 1, "PATCH", 200));
  r.json = r.Body();  // `prepared` dies here
  r.prepared_text = nullptr;
  return r;
}

Result<OpResult> Ops::Read(store::ReadView& view, const std::string& type,
                           const std::string& id) const {
  ASSIGN_OR_RETURN(auto current, view.ReadCurrent(type, id));
  if (!current) return Status::NotFound(type + "/" + id + " is not known");
  OpResult r;
  r.type = type;
  r.id = id;
  r.version = current->version;
  r.last_updated = current->last_updated;
  if (current->deleted) {
    return Status::Gone(type + "/" + id + " was deleted (version " +
                        std::to_string(current->version) + ")");
  }
  r.json = WithVersionMeta(current->json, current->version, current->last_updated);
  return r;
}

Result<OpResult> Ops::VRead(store::ReadView& view, const std::string& type, const std::string& id,
                            int64_t version) const {
  ASSIGN_OR_RETURN(auto v, view.ReadVersion(type, id, version));
  if (!v) {
    return Status::NotFound("version " + std::to_string(version) + " of " + type + "/" + id +
                            " is not known");
  }
  if (v->deleted) {
    return Status::Gone("version " + std::to_string(version) + " of " + type + "/" + id +
                        " records its deletion");
  }
  OpResult r;
  r.type = type;
  r.id = id;
  r.version = v->version;
  r.last_updated = v->last_updated;
  r.json = WithVersionMeta(v->json, v->version, v->last_updated);
  return r;
}

std::string VersionUrl(const RequestContext& ctx, const OpResult& op) {
  return ctx.base_url + "/" + op.type + "/" + op.id + "/_history/" + std::to_string(op.version);
}

FhirResponse WriteResponse(const RequestContext& ctx, const FhirRequest& req, const OpResult& op) {
  FhirResponse res;
  res.status = op.status;
  if (op.version > 0) {
    res.SetHeader("ETag", ETag(op.version));
    res.SetHeader("Last-Modified", FormatHttpDate(op.last_updated));
    if (op.status == 201 || op.status == 200) res.SetHeader("Location", VersionUrl(ctx, op));
  }
  const std::string& prefer = req.Header("prefer");
  bool minimal = prefer.find("return=minimal") != std::string::npos;
  bool outcome = prefer.find("return=OperationOutcome") != std::string::npos;
  if (op.status == 204) {
    // Delete: say what happened when asked; otherwise no body.
    if (outcome) {
      res.status = 200;
      res.body = SerializeJson(InformationOutcome(op.information));
    }
    return res;
  }
  if (minimal) return res;
  if (outcome) {
    res.body = SerializeJson(InformationOutcome(op.information.empty()
                                                    ? "OK: " + op.type + "/" + op.id + " version " +
                                                          std::to_string(op.version)
                                                    : op.information));
    return res;
  }
  res.body = op.Body();
  return res;
}

}  // namespace taproot::api::internal
