#include "auth/gateway.h"

#include <boost/json.hpp>
#include <cctype>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "api/access.h"
#include "api/outcome.h"
#include "auth/rate_limit.h"
#include "common/clock.h"
#include "common/log.h"
#include "search/compartments.h"
#include "search/query.h"

namespace taproot::auth {
namespace {

constexpr std::string_view kConfidentiality =
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const std::set<std::string> kBreakGlassReasons = {"emergency", "public-interest", "statute",
                                                  "court-order"};

Status Forbidden(std::string why) {
  return Status::Make(StatusCode::kForbidden, std::move(why), {}, "forbidden");
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The codes of meta.security with system `system` (or "system|code" for every label).
std::vector<std::string> SecurityLabels(const json::object& resource) {
  std::vector<std::string> out;
  const json::value* meta = FindKey(resource, "meta");
  if (!meta || !meta->is_object()) return out;
  const json::value* sec = FindKey(meta->get_object(), "security");
  if (!sec || !sec->is_array()) return out;
  for (const json::value& c : sec->get_array()) {
    if (!c.is_object()) continue;
    out.push_back(std::string(GetString(c.get_object(), "system")) + "|" +
                  std::string(GetString(c.get_object(), "code")));
  }
  return out;
}

bool HasLabel(const std::vector<std::string>& labels, std::string_view code) {
  std::string want = std::string(kConfidentiality) + "|" + std::string(code);
  for (const std::string& l : labels)
    if (l == want) return true;
  return false;
}

Permission PermissionFor(api::Interaction i, std::string_view id) {
  switch (i) {
    case api::Interaction::kRead:
      return kRead;
    case api::Interaction::kSearch:
      return kSearch;
    case api::Interaction::kHistory:
      return id.empty() ? kSearch : kRead;
    case api::Interaction::kCreate:
      return kCreate;
    case api::Interaction::kUpdate:
      return kUpdate;
    case api::Interaction::kDelete:
      return kDelete;
    case api::Interaction::kOperation:
      return kRead;
  }
  return kRead;
}

enum class Context { kUnrestricted, kUser, kPatient, kSystem };

// What one request carries: who, through which role, with which claims to a patient's record.
struct Caller {
  Context context = Context::kUnrestricted;
  Principal principal;
  RoleProfile profile;  // the selected role
  Grants grants;
  std::string break_glass;  // reason code, when asked for
  std::string break_glass_text;
  std::string self_claim;  // reason, when asked for
};

}  // namespace

// What a patient's Consent resources say, as far as access is concerned.
struct ConsentFacts {
  bool dissent = false;                   // no sharing outside the custodian organisations
  std::set<std::string> custodians;       // "Organization/id" of the dissent's organisation(s)
  bool opted_out = false;                 // national data opt-out: no secondary use
  std::set<std::string> very_restricted;  // actors ("Practitioner/x", "Organization/y")
                                          // explicitly granted V-labelled records
};

// Facts about organisations and patients that access decisions need, kept for a short time: a
// new registration, encounter or consent counts within the cache time, an ended one stops
// counting within it. Consent writes through this node clear the consent facts at once.
template <typename V>
class TtlCache {
 public:
  explicit TtlCache(int64_t ttl_seconds) : ttl_us_(ttl_seconds * 1'000'000) {}

  std::optional<V> Get(const std::string& key, int64_t now) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.second < now) return std::nullopt;
    return it->second.first;
  }
  void Put(const std::string& key, V value, int64_t now) {
    std::lock_guard lock(mu_);
    if (entries_.size() > 100000) entries_.clear();
    entries_[key] = {std::move(value), now + ttl_us_};
  }
  void Clear() {
    std::lock_guard lock(mu_);
    entries_.clear();
  }

 private:
  int64_t ttl_us_;
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<V, int64_t>> entries_;
};

// What the guard needs from one stored version, which never changes: its patient and whether
// it carries any security label. Keyed by type, id and a hash of the text (which holds the
// version), so a resource read again is judged without parsing it or running FHIRPath.
struct VersionFacts {
  std::string patient;
  bool labelled = false;
};

class VersionFactsCache {
 public:
  std::optional<VersionFacts> Get(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  void Put(const std::string& key, VersionFacts facts) {
    std::lock_guard lock(mu_);
    if (entries_.size() >= 200000) entries_.clear();  // bounded; refills as reads go on
    entries_.emplace(key, std::move(facts));
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, VersionFacts> entries_;  // guarded by mu_
};

struct Caches {
  explicit Caches(int64_t ttl) : relationships(ttl), orgs(ttl), consents(ttl) {}
  TtlCache<bool> relationships;             // "ODS\npatient"
  TtlCache<std::vector<std::string>> orgs;  // ODS -> Organization ids
  TtlCache<ConsentFacts> consents;          // patient -> facts
  VersionFactsCache versions;
};

// Purposes of use that are not the care of the patient (v3 ActReason): research, planning,
// public health, quality improvement, operations, payment, marketing.
bool SecondaryUse(std::string_view purpose) {
  static const std::set<std::string, std::less<>> kSecondary = {
      "HRESCH", "CLINTRCH", "PUBHLTH", "HQUALIMP",  "HOPERAT",
      "HPAYMT", "HMARKT",   "METAMGT", "HSYSADMIN", "TRAIN"};
  return kSecondary.count(purpose) > 0;
}

class Guard : public api::AccessGuard {
 public:
  Guard(const Caller& caller, const Policy& policy, const fhir::Model& model, Caches& caches,
        const api::FhirRequest& req, std::string purpose)
      : c_(caller), policy_(policy), model_(model), caches_(caches), purpose_(std::move(purpose)) {
    // PDS: restricted patients are never found by where they live or who their GP is.
    for (const auto& [k, v] : req.query) {
      if (k.rfind("address-postalcode", 0) == 0 || k.rfind("address-postcode", 0) == 0 ||
          k.rfind("general-practitioner", 0) == 0 || k.rfind("address", 0) == 0) {
        hide_restricted_ = true;
      }
    }
  }

  Status Allow(api::Interaction interaction, std::string_view type, std::string_view id,
               std::string_view operation) override {
    Status st = Check(interaction, type, id, operation);
    if (!st.ok() && denied_.empty()) denied_ = st.message();
    return st;
  }

  Result<bool> Release(store::ReadView& view, std::string_view type, std::string_view id,
                       std::string& text) override {
    // Every type that leaves needs read or search rights of its own, whatever route it takes
    // (an _include, a history entry, $everything): a scope on Observation does not carry the
    // Patient it points at.
    if (c_.context != Context::kUnrestricted) {
      bool scoped =
          c_.principal.scopes.Allows(type, kRead) || c_.principal.scopes.Allows(type, kSearch);
      bool granted = c_.grants.Allows(type, kRead) || c_.grants.Allows(type, kSearch);
      if (!scoped || !granted) return Withhold();
    }
    // A deletion in a history: no content, so no patient to judge; the type rights suffice.
    if (text.empty()) return true;
    // Most versions carry no security label: once their patient is known, they are judged
    // without being parsed.
    std::string key = std::string(type) + "/" + std::string(id) + "#" +
                      std::to_string(std::hash<std::string_view>()(text));
    if (auto facts = caches_.versions.Get(key); facts && !facts->labelled) {
      return Judge(view, type, facts->patient, {});
    }
    // The stored text was validated when it was written: a plain parse into one arena will do
    // (this runs for every resource that leaves).
    unsigned char buffer[8192];
    json::monotonic_resource arena(buffer, sizeof buffer);
    boost::system::error_code ec;
    json::value doc = json::parse(text, ec, &arena);
    if (ec || !doc.is_object()) return Withhold();
    json::object& res = doc.get_object();
    std::vector<std::string> labels = SecurityLabels(res);
    std::string patient = search::PatientKey(type, id, {}, &doc);
    caches_.versions.Put(key, VersionFacts{patient, !labels.empty()});
    ASSIGN_OR_RETURN(bool ok, Judge(view, type, patient, labels));
    if (!ok) return false;
    if (type == "Patient" && HasLabel(labels, "R") && !c_.grants.Has("view-restricted") &&
        c_.context != Context::kPatient && c_.context != Context::kUnrestricted) {
      if (hide_restricted_) return Withhold();
      for (std::string_view field : {"address", "telecom", "generalPractitioner", "contact"}) {
        res.erase(field);
      }
      text = SerializeJson(doc);
      redacted_ = true;
    }
    return true;
  }

  // The decision for one version, from its patient and labels (Release's parse or the cache).
  Result<bool> Judge(store::ReadView& view, std::string_view type, const std::string& patient,
                     const std::vector<std::string>& labels) {
    if (HasLabel(labels, "REDACTED")) return Withhold();
    if (c_.context == Context::kPatient) {
      if (!patient.empty() && patient != c_.principal.patient) return Withhold();
      for (const std::string& l : labels)
        if (policy_.not_for_patient().count(l)) return Withhold();
    }
    if (!patient.empty()) {
      // Demographics are found without a relationship (to start one: PDS works so); the
      // clinical record behind them needs one.
      if (type != "Patient") {
        ASSIGN_OR_RETURN(bool ok, MayOpen(view, patient));
        if (!ok) return Withhold();
      }
      ASSIGN_OR_RETURN(bool consented, ConsentAllows(view, patient, labels));
      if (!consented) return Withhold();
      touched_.insert(patient);
    } else if (HasLabel(labels, "V") && c_.context != Context::kUnrestricted) {
      return Withhold();  // a V label outside any patient's record: nobody can be granted it
    }
    return true;
  }

  Status Write(store::ReadView& view, api::Interaction interaction, std::string_view type,
               std::string_view id, std::string_view patient_key) override {
    if (patient_key.empty()) return Status::Ok();
    std::string patient(patient_key);
    if (c_.context == Context::kPatient && patient != c_.principal.patient) {
      return Deny(Forbidden("a patient may write only to their own record"));
    }
    ASSIGN_OR_RETURN(bool ok, type == "Patient" ? Result<bool>(true) : MayOpen(view, patient));
    if (!ok) {
      return Deny(Forbidden("no legitimate relationship with patient " + patient +
                            " for organisation " + c_.profile.organization +
                            "; self-claim one (Taproot-Self-Claim) or use break-glass"));
    }
    touched_.insert(patient);
    return Status::Ok();
  }

  std::optional<std::string> ConfinedToPatient() const override {
    if (c_.context == Context::kPatient) return c_.principal.patient;
    return std::nullopt;
  }

  bool Withheld() const override { return withheld_; }

  bool CountsByRelease() const override {
    // Every guarded caller: consent (dissent, opt-out) and labels withhold for all of them.
    return c_.context != Context::kUnrestricted;
  }

  const std::set<std::string>& touched() const { return touched_; }
  const std::string& denied() const { return denied_; }
  bool break_glass_used() const { return break_glass_used_; }
  bool self_claim_used() const { return self_claim_used_; }
  bool redacted() const { return redacted_; }

 private:
  bool Withhold() {
    withheld_ = true;
    return false;
  }
  Status Deny(Status st) {
    if (denied_.empty()) denied_ = st.message();
    return st;
  }

  Status Check(api::Interaction interaction, std::string_view type, std::string_view id,
               std::string_view operation) {
    if (c_.context == Context::kUnrestricted) return Status::Ok();
    std::string what =
        std::string(operation.empty() ? api::InteractionName(interaction) : operation) +
        (type.empty() ? std::string(" across all types") : " on " + std::string(type));
    std::string scope_type = type.empty() ? "*" : std::string(type);
    if (interaction == api::Interaction::kOperation && operation != "$everything") {
      if (!c_.grants.AllowsOperation(operation)) {
        return Forbidden("role " + c_.profile.role + " does not allow " + what);
      }
      return Status::Ok();
    }
    Permission p = PermissionFor(interaction, id);
    if (!c_.principal.scopes.Allows(scope_type, p)) {
      return Forbidden("the token's scopes (" + c_.principal.scopes.ToString() + ") do not allow " +
                       what);
    }
    if (!c_.grants.Allows(scope_type, p)) {
      return Forbidden("role " + c_.profile.role + " does not allow " + what);
    }
    if (interaction == api::Interaction::kOperation && !c_.grants.AllowsOperation(operation)) {
      return Forbidden("role " + c_.profile.role + " does not allow " + what);
    }
    if (c_.context == Context::kPatient && type == "Patient" && !id.empty() &&
        id != c_.principal.patient) {
      return Forbidden("a patient's token reaches only their own record");
    }
    return Status::Ok();
  }

  // Consent: dissent from sharing (outside the custodians, only break-glass opens the record),
  // the national data opt-out (no secondary use at all), and explicit grants for V records.
  Result<bool> ConsentAllows(store::ReadView& view, const std::string& patient,
                             const std::vector<std::string>& labels) {
    if (c_.context == Context::kUnrestricted) return true;
    ASSIGN_OR_RETURN(const ConsentFacts* facts, Consents(view, patient));
    if (SecondaryUse(purpose_) && facts->opted_out) return false;
    if (c_.context == Context::kPatient) return true;  // a patient's own record
    if (facts->dissent) {
      bool custodian = false;
      if (c_.context == Context::kUser && !c_.profile.organization.empty()) {
        ASSIGN_OR_RETURN(std::vector<std::string> orgs, OrgIds(view, c_.profile.organization));
        for (const std::string& o : orgs)
          custodian |= facts->custodians.count("Organization/" + o) > 0;
      }
      if (!custodian) {
        if (c_.break_glass.empty() || !c_.grants.Has("break-glass")) return false;
        break_glass_used_ = true;
      }
    }
    if (HasLabel(labels, "V")) {
      bool granted = !c_.principal.fhir_user.empty() &&
                     facts->very_restricted.count(c_.principal.fhir_user) > 0;
      if (!granted && c_.context == Context::kUser && !c_.profile.organization.empty()) {
        ASSIGN_OR_RETURN(std::vector<std::string> orgs, OrgIds(view, c_.profile.organization));
        for (const std::string& o : orgs)
          granted |= facts->very_restricted.count("Organization/" + o) > 0;
      }
      if (!granted) return false;
    }
    return true;
  }

  Result<const ConsentFacts*> Consents(store::ReadView& view, const std::string& patient) {
    auto it = consents_.find(patient);
    if (it != consents_.end()) return &it->second;
    int64_t now = NowMicros();
    std::optional<ConsentFacts> facts = caches_.consents.Get(patient, now);
    if (!facts) {
      facts.emplace();
      ASSIGN_OR_RETURN(
          search::ParsedSearch parsed,
          search::ParseSearch(model_, "Consent",
                              {{"patient", "Patient/" + patient}, {"status", "active"}}, true));
      parsed.query.count = 100;
      parsed.query.want_total = false;
      ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
      for (const store::VersionRecord& v : page.resources) ReadConsent(v.json, *facts);
      caches_.consents.Put(patient, *facts, now);
    }
    return &(consents_[patient] = std::move(*facts));
  }

  // One Consent's contribution. Privacy consents (scope patient-privacy) whose base provision
  // denies: dissent from sharing, custodians = Consent.organization. Research consents (scope
  // research) that deny: the national data opt-out. Permit provisions (at any depth) naming
  // actors and the security label V: explicit grants of V records to those actors.
  static void ReadConsent(std::string_view text, ConsentFacts& facts) {
    auto doc = ParseJson(text);
    if (!doc.ok() || !doc->is_object()) return;
    const json::object& c = doc->get_object();
    std::string scope;
    if (const json::value* sc = FindKey(c, "scope"); sc && sc->is_object()) {
      if (const json::value* codings = FindKey(sc->get_object(), "coding");
          codings && codings->is_array()) {
        for (const json::value& cd : codings->get_array())
          if (cd.is_object()) scope = std::string(GetString(cd.get_object(), "code"));
      }
    }
    const json::value* prov = FindKey(c, "provision");
    if (!prov || !prov->is_object()) return;
    std::string base_type(GetString(prov->get_object(), "type"));
    if (base_type == "deny" && scope == "patient-privacy") {
      facts.dissent = true;
      if (const json::value* orgs = FindKey(c, "organization"); orgs && orgs->is_array()) {
        for (const json::value& o : orgs->get_array()) {
          if (o.is_object())
            facts.custodians.insert(std::string(GetString(o.get_object(), "reference")));
        }
      }
    }
    if (base_type == "deny" && scope == "research") facts.opted_out = true;
    std::function<void(const json::object&)> walk = [&](const json::object& p) {
      bool permit = GetString(p, "type") == "permit";
      bool v = false;
      if (const json::value* labels = FindKey(p, "securityLabel"); labels && labels->is_array()) {
        for (const json::value& l : labels->get_array()) {
          if (l.is_object() && GetString(l.get_object(), "code") == "V") v = true;
        }
      }
      if (permit && v) {
        if (const json::value* actors = FindKey(p, "actor"); actors && actors->is_array()) {
          for (const json::value& a : actors->get_array()) {
            if (!a.is_object()) continue;
            const json::value* ref = FindKey(a.get_object(), "reference");
            if (ref && ref->is_object()) {
              facts.very_restricted.insert(std::string(GetString(ref->get_object(), "reference")));
            }
          }
        }
      }
      if (const json::value* subs = FindKey(p, "provision"); subs && subs->is_array()) {
        for (const json::value& sub : subs->get_array())
          if (sub.is_object()) walk(sub.get_object());
      }
    };
    walk(prov->get_object());
  }

  // The organisation's resources: by ODS code (any identifier system), or an id equal to it.
  Result<std::vector<std::string>> OrgIds(store::ReadView& view, const std::string& ods) {
    int64_t now = NowMicros();
    if (auto cached = caches_.orgs.Get(ods, now)) return *cached;
    std::vector<std::string> orgs;
    ASSIGN_OR_RETURN(search::ParsedSearch parsed,
                     search::ParseSearch(model_, "Organization", {{"identifier", ods}}, true));
    parsed.query.count = 20;
    parsed.query.want_total = false;
    ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
    for (const auto& r : page.resources) orgs.push_back(r.id);
    ASSIGN_OR_RETURN(auto same_id, view.ReadCurrent("Organization", ods));
    if (same_id && !same_id->deleted) orgs.push_back(ods);
    caches_.orgs.Put(ods, orgs, now);
    return orgs;
  }

  // May this caller open `patient`'s record (now, in this request)?
  Result<bool> MayOpen(store::ReadView& view, const std::string& patient) {
    if (c_.context != Context::kUser || !c_.grants.role || !c_.grants.role->relationship) {
      return true;
    }
    if (opened_.count(patient)) return opened_[patient];
    ASSIGN_OR_RETURN(bool related, HasRelationship(view, patient));
    bool ok = related;
    if (!ok && !c_.self_claim.empty() && c_.grants.Has("self-claim")) {
      ok = true;
      self_claim_used_ = true;
    }
    if (!ok && !c_.break_glass.empty() && c_.grants.Has("break-glass")) {
      ok = true;
      break_glass_used_ = true;
    }
    opened_[patient] = ok;
    return ok;
  }

  Result<bool> Exists(store::ReadView& view, const std::string& type, const api::Params& params) {
    ASSIGN_OR_RETURN(search::ParsedSearch parsed, search::ParseSearch(model_, type, params, true));
    parsed.query.count = 1;
    parsed.query.want_total = false;
    ASSIGN_OR_RETURN(store::SearchPage page, view.Search(parsed.query));
    return !page.resources.empty();
  }

  Result<bool> HasRelationship(store::ReadView& view, const std::string& patient) {
    const std::string& ods = c_.profile.organization;
    if (ods.empty()) return false;
    int64_t now = NowMicros();
    std::string key = ods + "\n" + patient;
    if (auto cached = caches_.relationships.Get(key, now)) return *cached;
    ASSIGN_OR_RETURN(std::vector<std::string> orgs, OrgIds(view, ods));
    bool related = false;
    if (!orgs.empty()) {
      std::string refs;
      for (const std::string& o : orgs) refs += (refs.empty() ? "" : ",") + ("Organization/" + o);
      std::string p = "Patient/" + patient;
      // Registered: the patient's GP practice or managing organisation.
      ASSIGN_OR_RETURN(auto pat, view.ReadCurrent("Patient", patient));
      if (pat && !pat->deleted) {
        for (const std::string& o : orgs) {
          std::string ref = "\"reference\":\"Organization/" + o + "\"";
          if (pat->json.find(ref) != std::string::npos) related = true;
        }
      }
      struct Probe {
        const char* type;
        const char* subject;
        const char* org;
        const char* status;
      };
      static constexpr Probe kProbes[] = {
          {"Encounter", "patient", "service-provider",
           "planned,arrived,triaged,in-progress,onleave"},
          {"EpisodeOfCare", "patient", "organization", "active,waitlist,onhold"},
          {"ServiceRequest", "patient", "performer", "active,on-hold"},
          {"CareTeam", "patient", "participant", "active,proposed"},
      };
      for (const Probe& probe : kProbes) {
        if (related) break;
        ASSIGN_OR_RETURN(related,
                         Exists(view, probe.type,
                                {{probe.subject, p}, {probe.org, refs}, {"status", probe.status}}));
      }
    }
    caches_.relationships.Put(key, related, now);
    return related;
  }

  const Caller& c_;
  const Policy& policy_;
  const fhir::Model& model_;
  Caches& caches_;
  std::string purpose_;
  std::map<std::string, ConsentFacts> consents_;
  bool hide_restricted_ = false;
  bool withheld_ = false, redacted_ = false;
  bool break_glass_used_ = false, self_claim_used_ = false;
  std::map<std::string, bool> opened_;
  std::set<std::string> touched_;
  std::string denied_;
};

class Gateway::Impl {
 public:
  Impl(api::Engine& engine, const fhir::Model& model, const Policy& policy,
       const TokenVerifier* verifier, audit::AuditLog* audit, GatewayOptions options)
      : engine_(engine),
        model_(model),
        policy_(policy),
        verifier_(verifier),
        audit_(audit),
        options_(options),
        caches_(options.relationship_cache_seconds),
        limiter_(options.rate_limit, 2 * options.rate_limit) {}

  Gateway::Reply Handle(api::RequestContext ctx, const api::FhirRequest& req,
                        const std::string& peer) {
    // The CapabilityStatement is public (clients discover how to authenticate from it).
    if (req.path == "metadata" && (req.method == "GET" || req.method == "HEAD")) {
      return {engine_.Handle(ctx, req), nullptr};
    }
    Caller caller;
    Status auth = Authenticate(req, caller);
    if (limiter_.enabled()) {
      // An authenticated caller is limited as itself wherever it connects from; a request that
      // did not authenticate, by its address (which also slows guessing).
      std::string key = auth.ok() && caller.context != Context::kUnrestricted
                            ? caller.principal.issuer + "\n" + caller.principal.subject
                            : "peer\n" + peer;
      if (int64_t wait = limiter_.Take(key, NowMicros()); wait > 0) {
        api::FhirResponse res = api::ErrorResponse(Status::Make(
            StatusCode::kTooManyRequests,
            "too many requests from this client; retry after " + std::to_string(wait) + " s", {},
            "throttled"));
        res.SetHeader("Retry-After", std::to_string(wait));
        return {std::move(res), nullptr};
      }
    }
    if (!auth.ok()) {
      api::FhirResponse res = api::ErrorResponse(auth);
      if (auth.code() == StatusCode::kUnauthorized) {
        res.SetHeader("WWW-Authenticate",
                      "Bearer realm=\"taproot\", error=\"invalid_token\", error_description=\"" +
                          auth.message().substr(0, 200) + "\"");
      }
      auto when = Audit(ctx, req, peer, caller, nullptr, res, auth.message());
      return {std::move(res), std::move(when)};
    }
    ctx.user =
        caller.principal.fhir_user.empty() ? caller.principal.subject : caller.principal.fhir_user;
    ctx.role = caller.profile.role;
    ctx.organization = caller.profile.organization;
    if (!caller.principal.purpose_of_use.empty())
      ctx.purpose_of_use = caller.principal.purpose_of_use;
    if (!caller.break_glass.empty()) ctx.purpose_of_use = "ETREAT";
    Guard guard(caller, policy_, model_, caches_, req, ctx.purpose_of_use);
    if (caller.context != Context::kUnrestricted) ctx.guard = &guard;
    api::FhirResponse res;
    if (req.path == "AuditEvent" || req.path.rfind("AuditEvent/", 0) == 0) {
      res = AuditRoute(ctx, req, caller, peer);
    } else {
      res = engine_.Handle(ctx, req);
    }
    if (guard.redacted()) res.SetHeader("Taproot-Redacted", "restricted patient details removed");
    if (req.method != "GET" && req.method != "HEAD" &&
        (req.path.empty() || req.path.rfind("Consent", 0) == 0)) {
      caches_.consents.Clear();  // a consent written here counts from the next request
    }
    auto when = Audit(ctx, req, peer, caller, &guard, res, guard.denied());
    return {std::move(res), std::move(when)};
  }

 private:
  Status Authenticate(const api::FhirRequest& req, Caller& caller) {
    const std::string& header = req.Header("authorization");
    if (header.empty() && options_.insecure_dev) {
      caller.context = Context::kUnrestricted;
      caller.principal.subject = "anonymous";
      return Status::Ok();
    }
    if (header.empty()) {
      return Status::Make(StatusCode::kUnauthorized,
                          "this server needs a bearer token (Authorization: Bearer ...)", {},
                          "login");
    }
    if (Lower(header.substr(0, 7)) != "bearer ") {
      return Status::Make(StatusCode::kUnauthorized,
                          "only Bearer tokens are accepted in Authorization", {}, "login");
    }
    if (!verifier_) {
      return Status::Make(StatusCode::kUnauthorized, "no token issuer is configured", {}, "login");
    }
    std::string token = header.substr(7);
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    ASSIGN_OR_RETURN(caller.principal, verifier_->Verify(token, NowMicros() / 1'000'000));
    const Principal& p = caller.principal;
    // The role: the one NHSD-Session-URID names (it must be one of the token's), else the first.
    const std::string& urid = req.Header("nhsd-session-urid");
    const RoleProfile* chosen = nullptr;
    for (const RoleProfile& r : p.roles) {
      if (urid.empty() || r.urpid == urid) {
        chosen = &r;
        break;
      }
    }
    if (!urid.empty() && !chosen) {
      return Forbidden("NHSD-Session-URID does not name one of the token's role profiles");
    }
    std::string role_code;
    if (chosen) {
      caller.profile = *chosen;
      caller.context = Context::kUser;
      role_code = std::string(RoleCode(chosen->role));
    } else if (!p.patient.empty()) {
      caller.context = Context::kPatient;
      role_code = "patient";
      caller.profile.role = "patient";
    } else {
      bool system_scope = false;
      for (const Scope& s : p.scopes.scopes) system_scope |= s.context == Scope::Context::kSystem;
      if (!system_scope) {
        return Forbidden("the token carries no role, no patient and no system/ scope");
      }
      caller.context = Context::kSystem;
      role_code = "system";
      caller.profile.role = "system";
    }
    const Role* role = policy_.FindRole(role_code);
    if (!role) return Forbidden("role " + caller.profile.role + " is not in the access policy");
    caller.grants = policy_.GrantsFor(*role, caller.profile.activities);
    if (caller.context == Context::kPatient) {
      // A patient's token reaches their own compartment, through patient/ scopes only.
      ScopeSet only;
      for (const Scope& s : p.scopes.scopes)
        if (s.context == Scope::Context::kPatient) only.scopes.push_back(s);
      caller.principal.scopes = only;
    }
    const std::string& bg = req.Header("taproot-break-glass");
    if (!bg.empty()) {
      std::string code = bg.substr(0, bg.find(' '));
      if (!kBreakGlassReasons.count(code)) {
        return Status::Invalid(
            "Taproot-Break-Glass needs a reason code: emergency, public-interest, statute or "
            "court-order, then optional text");
      }
      if (!caller.grants.Has("break-glass")) {
        return Forbidden("role " + caller.profile.role + " may not use break-glass access");
      }
      caller.break_glass = code;
      caller.break_glass_text = bg.size() > code.size() ? bg.substr(code.size() + 1, 500) : "";
    }
    const std::string& claim = req.Header("taproot-self-claim");
    if (!claim.empty()) {
      if (!caller.grants.Has("self-claim")) {
        return Forbidden("role " + caller.profile.role +
                         " may not self-claim a legitimate relationship");
      }
      caller.self_claim = claim.substr(0, 500);
    }
    return Status::Ok();
  }

  // AuditEvent lives in the audit log: read and search for auditors, and acknowledgement of
  // break-glass alerts. Nobody writes, changes or deletes an AuditEvent through the API.
  api::FhirResponse AuditRoute(api::RequestContext& ctx, const api::FhirRequest& req,
                               Caller& caller, const std::string& peer) {
    auto may = [&](std::string_view capability) -> Status {
      if (caller.context == Context::kUnrestricted) return Status::Ok();
      if (caller.grants.Has(capability)) return Status::Ok();
      return Forbidden(
          "role " + caller.profile.role + " may not " +
          (capability == "view-audit" ? "read the audit trail" : "acknowledge break-glass alerts"));
    };
    if (!audit_) return api::ErrorResponse(Status::NotFound("this server keeps no audit log"));
    std::vector<std::string> parts;
    for (size_t s = 0; s <= req.path.size();) {
      size_t e = req.path.find('/', s);
      if (e == std::string::npos) e = req.path.size();
      parts.push_back(req.path.substr(s, e - s));
      s = e + 1;
    }
    if (req.method == "POST" && parts.size() == 3 && parts[2] == "$acknowledge") {
      if (Status st = may("acknowledge-alerts"); !st.ok()) return api::ErrorResponse(st);
      int64_t seq = std::atoll(parts[1].c_str());
      audit::AuditQuery q;
      q.id = seq;
      q.count = 1;
      auto page = audit_->Search(q);
      if (!page.ok()) return api::ErrorResponse(page.status());
      if (page->records.empty() || !page->records[0].alert) {
        return api::ErrorResponse(Status::NotFound("AuditEvent/" + parts[1] + " is not an alert"));
      }
      if (page->records[0].acknowledged) {
        return api::ErrorResponse(
            Status::Conflict("AuditEvent/" + parts[1] + " is already acknowledged"));
      }
      audit::AuditEntry e = Entry(ctx, req, peer, caller, nullptr, 200, "alert acknowledged");
      e.subtype = "acknowledge";
      e.acknowledges = seq;
      auto appended = audit_->Append(std::move(e));
      if (!appended.ok()) return api::ErrorResponse(appended.status());
      api::FhirResponse res;
      res.status = 200;
      res.body = SerializeJson(
          api::InformationOutcome("AuditEvent/" + parts[1] + " acknowledged by " + ctx.user));
      return res;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      return api::ErrorResponse(Status::Make(
          StatusCode::kMethodNotAllowed,
          "the audit trail is written by the server only; AuditEvents cannot be created, "
          "changed or deleted through the API"));
    }
    if (Status st = may("view-audit"); !st.ok()) return api::ErrorResponse(st);
    audit::AuditQuery q;
    if (parts.size() == 2) {
      q.id = std::atoll(parts[1].c_str());
      q.count = 1;
      auto page = audit_->Search(q);
      if (!page.ok()) return api::ErrorResponse(page.status());
      if (page->records.empty()) {
        return api::ErrorResponse(Status::NotFound("AuditEvent/" + parts[1] + " is not known"));
      }
      api::FhirResponse res;
      res.body = page->records[0].json;
      return res;
    }
    for (const auto& [k, v] : req.query) {
      if (k == "agent" || k == "agent:identifier" || k == "who") {
        q.user = v;
      } else if (k == "patient") {
        q.patient = v.rfind("Patient/", 0) == 0 ? v.substr(8) : v;
      } else if (k == "subtype") {
        q.subtype = v.substr(v.find('|') == std::string::npos ? 0 : v.find('|') + 1);
      } else if (k == "action") {
        q.action = v;
      } else if (k == "outcome") {
        q.outcome = v;
      } else if (k == "alert") {
        q.open_alerts_only = v == "open";
      } else if (k == "date") {
        std::string prefix =
            v.size() > 2 && std::isalpha(static_cast<unsigned char>(v[0])) ? v.substr(0, 2) : "eq";
        auto t = ParseFhirDateTime(prefix == "eq" ? v : v.substr(2));
        if (!t.ok())
          return api::ErrorResponse(Status::Invalid("date: " + t.status().message(), "date"));
        if (prefix == "ge" || prefix == "gt" || prefix == "sa")
          q.from_us = *t;
        else if (prefix == "lt" || prefix == "le" || prefix == "eb")
          q.to_us = *t;
        else {
          q.from_us = *t;
          q.to_us = *t + 86'400'000'000LL;
        }
      } else if (k == "_count") {
        q.count = std::clamp<int64_t>(std::atoll(v.c_str()), 1, 1000);
      } else if (k == "_before") {
        q.before_seq = std::atoll(v.c_str());
      } else if (k != "_format" && k != "_pretty") {
        return api::ErrorResponse(Status::Invalid(
            "AuditEvent search takes agent, patient, subtype, action, outcome, date, alert, "
            "_count; not '" +
                k + "'",
            k));
      }
    }
    auto page = audit_->Search(q);
    if (!page.ok()) return api::ErrorResponse(page.status());
    json::array entries;
    std::string out = R"({"resourceType":"Bundle","type":"searchset","link":[)";
    std::string self = ctx.base_url + "/AuditEvent?" + req.raw_query;
    out += SerializeJson(json::object{{"relation", "self"}, {"url", self}});
    if (page->next_before_seq) {
      std::string next = ctx.base_url + "/AuditEvent?";
      for (const auto& [k, v] : req.query)
        if (k != "_before") next += k + "=" + v + "&";
      next += "_before=" + std::to_string(*page->next_before_seq);
      out += "," + SerializeJson(json::object{{"relation", "next"}, {"url", next}});
    }
    out += "],\"entry\":[";
    bool first = true;
    for (const auto& r : page->records) {
      if (!first) out += ",";
      first = false;
      out += "{\"fullUrl\":\"" + ctx.base_url + "/AuditEvent/" + std::to_string(r.seq) +
             "\",\"resource\":" + r.json + ",\"search\":{\"mode\":\"match\"}}";
    }
    out += "]}";
    api::FhirResponse res;
    res.body = std::move(out);
    return res;
  }

  audit::AuditEntry Entry(const api::RequestContext& ctx, const api::FhirRequest& req,
                          const std::string& peer, const Caller& caller, const Guard* guard,
                          int status, const std::string& why) {
    audit::AuditEntry e;
    e.time_us = NowMicros();
    e.user = ctx.user;
    std::string type = req.path.substr(0, req.path.find('/'));
    std::string rest = req.path.size() > type.size() ? req.path.substr(type.size() + 1) : "";
    std::string interaction;
    const std::string& m = req.method;
    bool instance = !rest.empty() && rest.find('$') == std::string::npos && rest != "_history" &&
                    rest != "_search";
    if (req.path.find('$') != std::string::npos) {
      interaction = "operation";
    } else if (m == "GET" || m == "HEAD") {
      interaction = req.path.find("_history") != std::string::npos    ? "history"
                    : instance && rest.find('/') == std::string::npos ? "read"
                    : instance                                        ? "vread"
                                                                      : "search";
    } else if (m == "POST") {
      interaction = req.path.empty() ? "transaction" : rest == "_search" ? "search" : "create";
    } else if (m == "PUT") {
      interaction = "update";
    } else if (m == "PATCH") {
      interaction = "patch";
    } else if (m == "DELETE") {
      interaction = "delete";
    } else {
      interaction = Lower(m);
    }
    e.subtype = interaction;
    e.action = interaction == "create"                                      ? "C"
               : interaction == "update" || interaction == "patch"          ? "U"
               : interaction == "delete"                                    ? "D"
               : interaction == "operation" || interaction == "transaction" ? "E"
                                                                            : "R";
    e.outcome = status < 400 ? "0" : status < 500 ? "4" : "8";
    e.outcome_desc = std::to_string(status) + (why.empty() ? "" : ": " + why.substr(0, 500));
    e.issuer = caller.principal.issuer;
    e.subject = caller.principal.subject;
    e.role = ctx.role;
    e.organization = ctx.organization;
    e.client_id = caller.principal.client_id;
    e.peer = peer;
    e.purpose = ctx.purpose_of_use;
    // The query itself is not kept: it can hold identifiers; the patients it touched are.
    e.request = req.method + " " + req.path.substr(0, 300);
    e.request_id = ctx.request_id;
    if (guard) {
      for (const std::string& p : guard->touched()) e.patients.push_back(p);
      e.alert = guard->break_glass_used();
      if (guard->break_glass_used()) {
        e.purpose = "ETREAT";
        e.break_glass = caller.break_glass +
                        (caller.break_glass_text.empty() ? "" : ": " + caller.break_glass_text);
      }
      if (guard->self_claim_used()) e.self_claim = caller.self_claim;
    }
    return e;
  }

  // Builds the request's AuditEvent now (the guard's facts die with the request) and returns
  // what queues it: the caller releases the response once the record is durable. An access that
  // cannot be accounted for is not released.
  std::function<void(std::function<void(bool)>)> Audit(const api::RequestContext& ctx,
                                                       const api::FhirRequest& req,
                                                       const std::string& peer,
                                                       const Caller& caller, const Guard* guard,
                                                       const api::FhirResponse& res,
                                                       const std::string& why) {
    if (!audit_) return nullptr;
    api::RequestContext actx = ctx;
    if (actx.user == "anonymous" && !caller.principal.subject.empty()) {
      actx.user = caller.principal.subject;
    }
    auto entry =
        std::make_shared<audit::AuditEntry>(Entry(actx, req, peer, caller, guard, res.status, why));
    audit::AuditLog* log = audit_;
    return [log, entry](std::function<void(bool)> then) {
      log->AppendAsync(std::move(*entry), [then = std::move(then)](const Status& st, int64_t) {
        if (!st.ok()) LogError("audit write failed: " + st.ToString());
        then(st.ok());
      });
    };
  }

  api::Engine& engine_;
  const fhir::Model& model_;
  const Policy& policy_;
  const TokenVerifier* verifier_;
  audit::AuditLog* audit_;
  GatewayOptions options_;
  Caches caches_;
  RateLimiter limiter_;
};

Gateway::Gateway(api::Engine& engine, const fhir::Model& model, const Policy& policy,
                 const TokenVerifier* verifier, audit::AuditLog* audit, GatewayOptions options)
    : impl_(std::make_unique<Impl>(engine, model, policy, verifier, audit, options)) {}
Gateway::~Gateway() = default;

Gateway::Reply Gateway::Handle(api::RequestContext ctx, const api::FhirRequest& req,
                               const std::string& peer) {
  return impl_->Handle(std::move(ctx), req, peer);
}

}  // namespace taproot::auth
