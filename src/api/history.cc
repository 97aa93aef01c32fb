// History and search: Bundles of type history and searchset, with paging links.
#include "api/history.h"

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <charconv>
#include <deque>
#include <limits>
#include <map>
#include <set>

#include "api/access.h"
#include "api/bundle_writer.h"
#include "api/outcome.h"
#include "api/subset.h"
#include "common/clock.h"
#include "search/compartments.h"
#include "search/indexer.h"
#include "search/normalize.h"
#include "search/params.h"
#include "search/query.h"
#include "search/resolver.h"

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

Result<bool> Release(store::ReadView& view, const RequestContext& ctx, std::string_view type,
                     std::string_view id, std::string& text) {
  if (!ctx.guard) return true;
  return ctx.guard->Release(view, type, id, text);
}

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
  std::vector<std::string> texts;
  std::vector<const store::VersionRecord*> sent;
  for (const store::VersionRecord& v : page.entries) {
    std::string text =
        v.deleted ? std::string() : WithVersionMeta(v.json, v.version, v.last_updated);
    ASSIGN_OR_RETURN(bool ok, Release(view, ctx, v.type, v.id, text));
    if (!ok) continue;
    texts.push_back(std::move(text));
    sent.push_back(&v);
  }
  std::string path = ctx.base_url + "/" + req.path;
  BundleWriter w("history", ctx.guard && ctx.guard->Withheld() ? std::optional<int64_t>()
                                                               : std::optional(page.total));
  Params self = kept;
  if (q.before_seq) self.emplace_back("_before", std::to_string(*q.before_seq));
  w.Link("self", path + QueryString(self));
  if (page.next_before_seq) {
    Params next = kept;
    next.emplace_back("_before", std::to_string(*page.next_before_seq));
    w.Link("next", path + QueryString(next));
  }
  for (size_t i = 0; i < sent.size(); ++i) {
    const store::VersionRecord& v = *sent[i];
    json::object extra;
    std::string method = v.deleted ? "DELETE" : v.method;
    extra["request"] =
        json::object{{"method", method}, {"url", method == "POST" ? v.type : v.type + "/" + v.id}};
    extra["response"] = json::object{{"status", ResponseStatus(v)},
                                     {"etag", ETag(v.version)},
                                     {"lastModified", FormatInstant(v.last_updated)}};
    w.Entry(ctx.base_url + "/" + v.type + "/" + v.id, texts[i], extra);
  }
  return w.Finish();
}

namespace {

constexpr size_t kMaxIncluded = 1000;
constexpr int kMaxIterations = 4;

struct Included {
  std::deque<store::VersionRecord> resources;
  bool truncated = false;
};

// _include and _revinclude: each round answers every include with one query per target type
// (forward) or per chunk of up to 200 matched resources (reverse), never one per result row;
// :iterate repeats on what the previous round added, up to kMaxIterations rounds.
// `prefetched`: resources read beforehand (IncludePrefetch) in the same view; a target found
// there is moved from it, and only the others are read.
Result<Included> FindIncluded(store::ReadView& view, const std::vector<search::Include>& includes,
                              const std::vector<store::VersionRecord>& matches,
                              std::vector<store::VersionRecord> prefetched = {}) {
  Included out;
  std::map<std::string, store::VersionRecord*> ready;
  for (auto& r : prefetched) ready.emplace(r.type + "/" + r.id, &r);
  std::set<std::string> seen;
  std::vector<const store::VersionRecord*> frontier;
  for (const auto& m : matches) {
    seen.insert(m.type + "/" + m.id);
    frontier.push_back(&m);
  }
  auto add = [&](store::VersionRecord r, std::vector<const store::VersionRecord*>& next) {
    if (!seen.insert(r.type + "/" + r.id).second) return;
    if (out.resources.size() >= kMaxIncluded) {
      out.truncated = true;
      return;
    }
    out.resources.push_back(std::move(r));
    next.push_back(&out.resources.back());
  };
  for (int round = 0; round < kMaxIterations && !frontier.empty(); ++round) {
    std::vector<const store::VersionRecord*> next;
    for (const search::Include& inc : includes) {
      if (round > 0 && !inc.iterate) continue;
      if (!inc.reverse) {
        std::map<std::string, std::vector<std::string>> ids_by_type;
        for (const store::VersionRecord* r : frontier) {
          if (!inc.source_type.empty() && r->type != inc.source_type) continue;
          auto doc = ParseJson(r->json);
          if (!doc.ok()) continue;
          for (const search::ParamDef* p : search::R4Params().ForType(r->type)) {
            if (p->type != search::ParamType::kReference) continue;
            if (!inc.param.empty() && p->code != inc.param) continue;
            for (const store::IndexEntry& e : search::ExtractParam(*p, *doc)) {
              if (e.system.empty()) continue;  // not a reference to a resource here
              if (!inc.target_type.empty() && e.system != inc.target_type) continue;
              if (!seen.count(e.system + "/" + e.value)) ids_by_type[e.system].push_back(e.value);
            }
          }
        }
        for (auto& [type, all_ids] : ids_by_type) {
          std::vector<std::string> ids;
          for (std::string& id : all_ids) {
            if (seen.count(type + "/" + id)) continue;  // two matches refer to it
            auto it = ready.find(type + "/" + id);
            if (it != ready.end()) {
              add(std::move(*it->second), next);
              ready.erase(it);
            } else {
              ids.push_back(std::move(id));
            }
          }
          for (size_t start = 0; start < ids.size(); start += 500) {
            store::SearchQuery q;
            q.type = type;
            q.ids.assign(
                ids.begin() + static_cast<std::ptrdiff_t>(start),
                ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), start + 500)));
            q.count = static_cast<int64_t>(kMaxIncluded) + 1;
            q.want_total = false;
            ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
            for (auto& r : page.resources) add(std::move(r), next);
          }
        }
      } else {
        std::vector<const store::VersionRecord*> targets;
        for (const store::VersionRecord* r : frontier) {
          if (inc.target_type.empty() || r->type == inc.target_type) targets.push_back(r);
        }
        for (size_t start = 0; start < targets.size(); start += 200) {
          store::IndexClause clause;
          clause.param = inc.param;
          clause.kind = store::IndexKind::kReference;
          for (size_t i = start; i < std::min(targets.size(), start + 200); ++i) {
            clause.any_of.emplace_back();
            clause.any_of.back().system = targets[i]->type;
            clause.any_of.back().value = targets[i]->id;
          }
          store::SearchQuery q;
          q.type = inc.source_type;
          q.clauses.push_back(std::move(clause));
          q.count = static_cast<int64_t>(kMaxIncluded) + 1;
          q.want_total = false;
          ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
          for (auto& r : page.resources) add(std::move(r), next);
        }
      }
    }
    frontier = std::move(next);
  }
  return out;
}

// Reads by id of what a search's forward _include will most likely want, to be sent with the
// search itself (ReadView::SearchBatch; on PostgreSQL, in the same round trip instead of a second
// one after the page). When the search filters on the reference parameter it includes by
// (Condition?patient=X&_include=Condition:patient), that clause's targets are what the matches
// refer to through it (all of it, for a parameter with one value per resource). FindIncluded
// still decides from the matches what is included; a prefetched resource nothing refers to is
// dropped.
std::vector<store::SearchQuery> IncludePrefetch(const search::ParsedSearch& parsed,
                                                const std::string& type) {
  std::map<std::string, std::set<std::string>> ids_by_type;
  for (const search::Include& inc : parsed.includes) {
    if (inc.reverse || inc.iterate || inc.source_type != type || inc.param.empty()) continue;
    const search::ParamDef* def = search::R4Params().Find(type, inc.param);
    for (const store::IndexClause& c : parsed.query.clauses) {
      if (c.param != inc.param || c.kind != store::IndexKind::kReference || c.negate || c.missing ||
          !c.any_param.empty() || !c.chain.empty() || c.has) {
        continue;
      }
      for (const store::IndexPredicate& p : c.any_of) {
        if (p.match != store::IndexPredicate::Match::kEqual || p.value.empty() ||
            p.value.find('/') != std::string::npos) {
          continue;
        }
        std::string target = p.system.value_or("");
        if (target.empty() && def) {
          target = !def->only_target.empty()  ? def->only_target
                   : def->targets.size() == 1 ? def->targets.front()
                                              : "";
        }
        if (target.empty() || (!inc.target_type.empty() && inc.target_type != target)) continue;
        ids_by_type[target].insert(p.value);
      }
    }
  }
  std::vector<store::SearchQuery> out;
  for (auto& [t, ids] : ids_by_type) {
    store::SearchQuery q;
    q.type = t;
    q.ids.assign(ids.begin(), ids.end());
    q.count = static_cast<int64_t>(kMaxIncluded) + 1;
    q.want_total = false;
    out.push_back(std::move(q));
  }
  return out;
}

// The clause that keeps a search of `type` within a compartment, or nullopt for the
// compartment's own type (which matches by id).
Result<std::optional<store::IndexClause>> CompartmentClause(const Compartment& c,
                                                            const std::string& type) {
  if (type == c.type) return std::optional<store::IndexClause>();
  const std::vector<std::string>& params = search::CompartmentParams(c.type, type);
  if (params.empty()) {
    return Status::Invalid(type + " resources are not in the " + c.type + " compartment");
  }
  store::IndexClause clause;
  clause.param = params.front();
  clause.kind = store::IndexKind::kReference;
  clause.any_param = params;
  clause.any_of.emplace_back();
  clause.any_of.back().system = c.type;
  clause.any_of.back().value = c.id;
  return std::optional<store::IndexClause>(std::move(clause));
}

}  // namespace

Result<std::string> EverythingBundle(store::ReadView& view, const RequestContext& ctx,
                                     const std::string& patient_id, const Params& params) {
  Compartment patient{"Patient", patient_id};
  ASSIGN_OR_RETURN(auto subject, view.ReadCurrent("Patient", patient_id));
  if (!subject || subject->deleted) {
    return Status::NotFound("Patient/" + patient_id + " is not known");
  }
  int64_t count = 50, offset = 0;
  std::optional<int64_t> since;
  // start/end: care dates. Types with a `date` parameter are kept when it overlaps the range;
  // types without one (the Patient, Medication...) are not dated and always kept.
  std::optional<int64_t> care_start, care_end;
  std::set<std::string> only_types;
  Params used;
  for (const auto& [k, v] : params) {
    if (k == "_count") {
      ASSIGN_OR_RETURN(count, search::ParseNonNegative(k, v));
      count = std::min(count, search::kMaxCount);
    } else if (k == "_offset") {
      ASSIGN_OR_RETURN(offset, search::ParseNonNegative(k, v));
    } else if (k == "_since") {
      auto t = ParseFhirDateTime(v);
      if (!t.ok()) return Status::Invalid("_since: " + t.status().message(), "_since");
      since = *t;
      used.emplace_back(k, v);
    } else if (k == "_type") {
      for (size_t start = 0;;) {
        size_t comma = v.find(',', start);
        only_types.insert(v.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      used.emplace_back(k, v);
    } else if (k == "start" || k == "end") {
      auto range = search::DateRange(v);
      if (!range) return Status::Invalid("'" + v + "' is not a date", k);
      if (k == "start") care_start = range->start;
      if (k == "end") care_end = range->end;
      used.emplace_back(k, v);
    } else if (k != "_format" && k != "_pretty") {
      return Status::Invalid("$everything does not take '" + k + "'", k);
    }
  }
  // Per type in order (the patient first), its total, then where the page falls, its slice.
  std::vector<std::string> types{"Patient"};
  for (const auto& t : search::CompartmentTypes("Patient")) {
    if (t != "Patient") types.push_back(t);
  }
  // Most compartment types hold nothing for a given patient: find those that do first.
  std::vector<std::pair<std::string, std::string>> links;
  for (const std::string& t : types) {
    if (t == "Patient" || (!only_types.empty() && !only_types.count(t))) continue;
    for (const std::string& p : search::CompartmentParams("Patient", t)) links.emplace_back(t, p);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> held,
                   view.ReferringTypes("Patient", patient_id, links));
  std::set<std::string> holding(held.begin(), held.end());
  std::vector<store::SearchQuery> queries;
  for (const std::string& t : types) {
    if (!only_types.empty() && !only_types.count(t)) continue;
    if (t != "Patient" && !holding.count(t)) continue;
    store::SearchQuery q;
    q.type = t;
    ASSIGN_OR_RETURN(auto clause, CompartmentClause(patient, t));
    if (clause) {
      q.clauses.push_back(std::move(*clause));
    } else {
      q.ids = {patient_id};
    }
    if (since) q.updated_ge = *since;
    if ((care_start || care_end) && search::R4Params().Find(t, "date")) {
      store::IndexClause dated;
      dated.param = "date";
      dated.kind = store::IndexKind::kDate;
      dated.any_of.emplace_back();
      dated.any_of.back().prefix = store::Prefix::kAp;  // overlaps [start, end]
      dated.any_of.back().start = care_start.value_or(std::numeric_limits<int64_t>::min());
      dated.any_of.back().end = care_end.value_or(std::numeric_limits<int64_t>::max());
      q.clauses.push_back(std::move(dated));
    }
    queries.push_back(std::move(q));
  }
  // Every type's total, then the slices of those that fall within [offset, offset + count): two
  // batches of independent searches, which a store may send together (on PostgreSQL, two round
  // trips instead of one or two per type).
  std::vector<store::SearchQuery> totals = queries;
  for (store::SearchQuery& q : totals) {
    q.count = 0;
    q.want_total = true;
  }
  ASSIGN_OR_RETURN(std::vector<store::SearchPage> counted, view.SearchBatch(totals));
  std::vector<store::SearchQuery> slices;
  int64_t seen = 0, total = 0;
  for (size_t i = 0; i < queries.size(); ++i) {
    int64_t n = counted[i].total.value_or(0);
    int64_t from = std::max(offset, seen) - seen;
    int64_t to = std::min(offset + count, seen + n) - seen;
    if (to > from) {
      store::SearchQuery q = queries[i];
      q.offset = from;
      q.count = to - from;
      q.want_total = false;
      slices.push_back(std::move(q));
    }
    seen += n;
    total += n;
  }
  ASSIGN_OR_RETURN(std::vector<store::SearchPage> got, view.SearchBatch(slices));
  std::vector<store::VersionRecord> page;
  for (store::SearchPage& g : got) {
    for (auto& r : g.resources) page.push_back(std::move(r));
  }
  std::vector<std::pair<const store::VersionRecord*, std::string>> sent;
  for (const store::VersionRecord& v : page) {
    std::string text = WithVersionMeta(v.json, v.version, v.last_updated);
    ASSIGN_OR_RETURN(bool ok, Release(view, ctx, v.type, v.id, text));
    if (ok) sent.emplace_back(&v, std::move(text));
  }
  std::string path = ctx.base_url + "/Patient/" + patient_id + "/$everything";
  BundleWriter w("searchset", ctx.guard && ctx.guard->Withheld() ? std::optional<int64_t>()
                                                                 : std::optional(total));
  Params self = used;
  self.emplace_back("_count", std::to_string(count));
  if (offset) self.emplace_back("_offset", std::to_string(offset));
  w.Link("self", path + QueryString(self));
  if (offset + count < total) {
    Params next = used;
    next.emplace_back("_count", std::to_string(count));
    next.emplace_back("_offset", std::to_string(offset + count));
    w.Link("next", path + QueryString(next));
  }
  for (const auto& [v, text] : sent) {
    w.Entry(ctx.base_url + "/" + v->type + "/" + v->id, text,
            json::object{{"search", json::object{{"mode", "match"}}}});
  }
  return w.Finish();
}

Result<std::string> SearchBundle(store::ReadView& view, const fhir::Model& model,
                                 const RequestContext& ctx, const FhirRequest& req,
                                 const std::string& type, const Params& params,
                                 const Compartment* compartment) {
  bool strict = req.Header("prefer").find("handling=strict") != std::string::npos;
  // Token :in and friends see the server's own ValueSets and CodeSystems over the R4 ones.
  fhir::Terminology terms(&fhir::R4Terminology(), search::ViewTerminologyLoader(view));
  ASSIGN_OR_RETURN(search::ParsedSearch parsed,
                   search::ParseSearch(model, type, params, strict, &terms));
  // A caller who may see one patient only is searched within that patient's compartment, so
  // that totals and pages count only what can be released.
  std::optional<Compartment> confined;
  if (ctx.guard && !type.empty()) {
    if (auto patient = ctx.guard->ConfinedToPatient();
        patient && !search::CompartmentParams("Patient", type).empty()) {
      confined = Compartment{"Patient", *patient};
      if (type == "Patient") {
        parsed.query.ids = parsed.query.ids.empty() || std::count(parsed.query.ids.begin(),
                                                                  parsed.query.ids.end(), *patient)
                               ? std::vector<std::string>{*patient}
                               : std::vector<std::string>{""};
      } else {
        ASSIGN_OR_RETURN(auto clause, CompartmentClause(*confined, type));
        if (clause) parsed.query.clauses.push_back(std::move(*clause));
      }
    }
  }
  if (compartment) {
    ASSIGN_OR_RETURN(auto clause, CompartmentClause(*compartment, type));
    if (clause) {
      parsed.query.clauses.push_back(std::move(*clause));
    } else {  // the compartment's own resource
      std::vector<std::string> ids;
      if (parsed.query.ids.empty() ||
          std::count(parsed.query.ids.begin(), parsed.query.ids.end(), compartment->id)) {
        ids.push_back(compartment->id);
      } else {
        ids.push_back("");  // asked for other ids: nothing in the compartment matches
      }
      parsed.query.ids = std::move(ids);
    }
  }
  ASSIGN_OR_RETURN(Subset subset, ParseSubset(params));
  bool count_only = subset.summary == Subset::Summary::kCount;
  // _summary and _elements travel in every paging link.
  for (const auto& [k, v] : params) {
    if ((k == "_summary" && !count_only) || k == "_elements") parsed.used.emplace_back(k, v);
  }
  if (count_only && ctx.guard && ctx.guard->CountsByRelease()) {
    // Only what the caller may see is counted: every match is released (without being sent),
    // a page at a time, up to a bound.
    static constexpr int64_t kMaxCounted = 200000;
    store::SearchQuery q = parsed.query;
    q.count = 1000;
    q.want_total = false;
    q.sort.clear();
    int64_t seen = 0, counted = 0;
    for (;;) {
      ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
      for (const store::VersionRecord& v : page.resources) {
        std::string text = WithVersionMeta(v.json, v.version, v.last_updated);
        ASSIGN_OR_RETURN(bool ok, Release(view, ctx, v.type, v.id, text));
        counted += ok ? 1 : 0;
      }
      seen += static_cast<int64_t>(page.resources.size());
      if (!page.has_more || page.resources.empty()) break;
      if (seen >= kMaxCounted) {
        return Status::Make(StatusCode::kUnprocessable,
                            "more than " + std::to_string(kMaxCounted) +
                                " matches to count one by one under access control; narrow the "
                                "search");
      }
      q.after_seq = page.resources.back().seq;
    }
    BundleWriter w("searchset", counted);
    std::string path = ctx.base_url + "/" + (type.empty() ? std::string() : type);
    Params self = parsed.used;
    self.emplace_back("_summary", "count");
    w.Link("self", path + QueryString(self));
    return w.Finish();
  }
  if (count_only) {
    parsed.query.count = 0;
    parsed.query.want_total = true;
  }
  bool explain = false;
  for (const auto& [k, v] : params) explain = explain || (k == "_explain" && v == "true");
  if (explain) {
    // The plan and timings instead of results, for operators only.
    if (ctx.guard) {
      RETURN_IF_ERROR(ctx.guard->Allow(Interaction::kOperation, type, {}, "_explain"));
    }
    parsed.query.explain = true;
    int64_t start = NowMicros();
    ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
    json::array steps;
    for (const auto& step : page.explained) {
      json::array plan;
      for (const auto& line : step.plan) plan.push_back(json::string(line));
      steps.push_back(json::object{{"sql", step.sql}, {"plan", plan}, {"micros", step.micros}});
    }
    json::object out{
        {"resourceType", "Parameters"},
        {"parameter",
         json::array{json::object{{"name", "total"}, {"valueInteger", page.total.value_or(0)}},
                     json::object{{"name", "micros"}, {"valueInteger", NowMicros() - start}},
                     json::object{{"name", "plan"}, {"valueString", json::serialize(steps)}}}}};
    return SerializeJson(out);
  }
  // After the first page of a search in written order, next links carry the last seq seen
  // (_after) as well as the position (_offset, for previous links): the page then starts from
  // the index where the last one ended instead of skipping `offset` matches again.
  store::SearchQuery page_query = parsed.query;
  if (page_query.after_seq) page_query.offset = 0;
  std::vector<store::SearchQuery> batch;
  if (!count_only && !parsed.includes.empty()) batch = IncludePrefetch(parsed, type);
  store::SearchPage page;
  std::vector<store::VersionRecord> prefetched;
  if (batch.empty()) {
    ASSIGN_OR_RETURN(page, view.Search(page_query));
  } else {
    batch.insert(batch.begin(), std::move(page_query));
    ASSIGN_OR_RETURN(std::vector<store::SearchPage> pages, view.SearchBatch(batch));
    page = std::move(pages.front());
    for (size_t i = 1; i < pages.size(); ++i) {
      for (auto& r : pages[i].resources) prefetched.push_back(std::move(r));
    }
  }
  // What will be sent, released by the guard first: matches, then what they include.
  std::vector<std::pair<const store::VersionRecord*, std::string>> matches, included;
  for (const store::VersionRecord& v : page.resources) {
    std::string text =
        ApplySubset(model, WithVersionMeta(v.json, v.version, v.last_updated), subset);
    ASSIGN_OR_RETURN(bool ok, Release(view, ctx, v.type, v.id, text));
    if (ok) matches.emplace_back(&v, std::move(text));
  }
  Included inc;
  if (!parsed.includes.empty() && !count_only) {
    ASSIGN_OR_RETURN(inc,
                     FindIncluded(view, parsed.includes, page.resources, std::move(prefetched)));
    for (const store::VersionRecord& v : inc.resources) {
      std::string text =
          ApplySubset(model, WithVersionMeta(v.json, v.version, v.last_updated), subset);
      ASSIGN_OR_RETURN(bool ok, Release(view, ctx, v.type, v.id, text));
      if (ok) included.emplace_back(&v, std::move(text));
    }
  }
  if (ctx.guard && ctx.guard->Withheld()) page.total.reset();
  std::string path = ctx.base_url + "/" +
                     (compartment ? compartment->type + "/" + compartment->id + "/" : "") +
                     (type.empty() ? std::string() : type);
  Params self = parsed.used;
  if (!count_only) self.emplace_back("_count", std::to_string(parsed.query.count));
  if (count_only) self.emplace_back("_summary", "count");
  if (parsed.query.offset) self.emplace_back("_offset", std::to_string(parsed.query.offset));
  // Later pages read the store as this page saw it (store::SearchQuery::as_of_seq).
  // Set whenever a link below needs it (store::SearchPage::snapshot_seq).
  std::string snapshot = std::to_string(page.snapshot_seq.value_or(0));
  if (parsed.query.as_of_seq) self.emplace_back("_snapshot", snapshot);
  if (parsed.query.after_seq) self.emplace_back("_after", std::to_string(*parsed.query.after_seq));
  BundleWriter w("searchset", page.total);
  w.Link("self", path + QueryString(self));
  if (page.has_more) {
    Params next = parsed.used;
    next.emplace_back("_count", std::to_string(parsed.query.count));
    next.emplace_back("_offset", std::to_string(parsed.query.offset + parsed.query.count));
    next.emplace_back("_snapshot", snapshot);
    if (parsed.query.sort.empty() && !page.resources.empty()) {
      next.emplace_back("_after", std::to_string(page.resources.back().seq));
    }
    w.Link("next", path + QueryString(next));
  }
  if (parsed.query.offset > 0) {
    Params prev = parsed.used;
    prev.emplace_back("_count", std::to_string(parsed.query.count));
    prev.emplace_back(
        "_offset", std::to_string(std::max<int64_t>(0, parsed.query.offset - parsed.query.count)));
    prev.emplace_back("_snapshot", snapshot);
    w.Link("previous", path + QueryString(prev));
  }
  for (const auto& [v, text] : matches) {
    w.Entry(ctx.base_url + "/" + v->type + "/" + v->id, text,
            json::object{{"search", json::object{{"mode", "match"}}}});
  }
  if (!parsed.includes.empty() && !count_only) {
    for (const auto& [v, text] : included) {
      w.Entry(ctx.base_url + "/" + v->type + "/" + v->id, text,
              json::object{{"search", json::object{{"mode", "include"}}}});
    }
    if (inc.truncated) {
      parsed.ignored.push_back("_include: more than " + std::to_string(kMaxIncluded) +
                               " resources to include; the rest were left out");
    }
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
