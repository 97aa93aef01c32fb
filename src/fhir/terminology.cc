#include "fhir/terminology.h"

#include <re2/re2.h>

#include <algorithm>

#include "common/compress.h"
#include "common/embedded.h"
#include "common/json.h"
#include "common/log.h"

namespace taproot::fhir {
namespace {

constexpr int kMaxDepth = 16;  // value sets importing value sets

std::string StripVersion(const std::string& url) {
  size_t bar = url.find('|');
  return bar == std::string::npos ? url : url.substr(0, bar);
}

std::string Key(std::string_view system, std::string_view code) {
  std::string k(system);
  k += '|';
  k += code;
  return k;
}

// The concepts of a CodeSystem, nested ones with their parent; also the `parent` property.
void ReadConcepts(const json::value* concepts, const std::string* parent,
                  std::vector<std::string>& codes,
                  std::unordered_map<std::string, std::vector<std::string>>& parents) {
  if (!concepts || !concepts->is_array()) return;
  for (const auto& c : concepts->get_array()) {
    if (!c.is_object()) continue;
    std::string code(GetString(c.get_object(), "code"));
    if (code.empty()) continue;
    codes.push_back(code);
    if (parent) parents[code].push_back(*parent);
    if (const json::value* props = FindKey(c.get_object(), "property");
        props && props->is_array()) {
      for (const auto& p : props->get_array()) {
        if (!p.is_object()) continue;
        std::string_view name = GetString(p.get_object(), "code");
        if (name == "parent" || name == "subsumedBy") {
          std::string_view v = GetString(p.get_object(), "valueCode");
          if (!v.empty()) parents[code].emplace_back(v);
        }
      }
    }
    ReadConcepts(FindKey(c.get_object(), "concept"), &code, codes, parents);
  }
}

}  // namespace

Terminology::Terminology(const Terminology* base, Loader loader)
    : base_(base), loader_(std::move(loader)) {}

std::shared_ptr<const Terminology::CodeSystem> Terminology::ParseCodeSystem(
    const json::object& resource) {
  auto cs = std::make_shared<CodeSystem>();
  cs->complete = GetString(resource, "content") == "complete";
  ReadConcepts(FindKey(resource, "concept"), nullptr, cs->codes, cs->parents);
  return cs;
}

Status Terminology::Add(const json::object& resource) {
  std::string type(GetString(resource, "resourceType"));
  std::string url = StripVersion(std::string(GetString(resource, "url")));
  if (url.empty()) return Status::Invalid(type + " has no url");
  if (type == "CodeSystem") {
    auto cs = ParseCodeSystem(resource);
    std::lock_guard lock(mu_);
    code_systems_[url] = std::move(cs);
    expansions_.clear();
    return Status::Ok();
  }
  if (type == "ValueSet") {
    std::lock_guard lock(mu_);
    value_sets_[url] = resource;
    expansions_.clear();
    return Status::Ok();
  }
  return Status::Invalid("not a ValueSet or CodeSystem: " + type);
}

void Terminology::Invalidate() {
  std::lock_guard lock(mu_);
  expansions_.clear();
}

std::shared_ptr<const Terminology::CodeSystem> Terminology::FindCodeSystem(
    const std::string& url) const {
  {
    std::lock_guard lock(mu_);
    if (auto it = code_systems_.find(url); it != code_systems_.end()) return it->second;
  }
  if (base_) {
    if (auto cs = base_->FindCodeSystem(url)) return cs;
  }
  if (loader_) {
    if (auto r = loader_("CodeSystem", url); r && r->is_object()) {
      return ParseCodeSystem(r->get_object());
    }
  }
  return nullptr;
}

std::optional<json::object> Terminology::FindValueSet(const std::string& url) const {
  {
    std::lock_guard lock(mu_);
    if (auto it = value_sets_.find(url); it != value_sets_.end()) return it->second;
  }
  if (base_) {
    if (auto vs = base_->FindValueSet(url)) return vs;
  }
  if (loader_) {
    if (auto r = loader_("ValueSet", url); r && r->is_object()) return r->get_object();
  }
  return std::nullopt;
}

bool Terminology::IsA(const CodeSystem& cs, const std::string& code, const std::string& ancestor) {
  // Breadth-first up the (possibly poly-hierarchical) parents; bounded by the code count.
  std::vector<std::string> frontier{code};
  std::unordered_set<std::string> seen{code};
  while (!frontier.empty()) {
    std::string c = std::move(frontier.back());
    frontier.pop_back();
    if (c == ancestor) return true;
    auto it = cs.parents.find(c);
    if (it == cs.parents.end()) continue;
    for (const auto& p : it->second) {
      if (seen.insert(p).second) frontier.push_back(p);
    }
  }
  return false;
}

Result<std::vector<std::string>> Terminology::Filter(const CodeSystem& cs,
                                                     const std::string& system,
                                                     const json::object& filter) const {
  std::string property(GetString(filter, "property"));
  std::string op(GetString(filter, "op"));
  std::string value(GetString(filter, "value"));
  std::vector<std::string> out;
  if ((op == "is-a" || op == "descendent-of" || op == "generalizes") &&
      (property == "concept" || property == "code")) {
    for (const auto& c : cs.codes) {
      bool match = op == "generalizes" ? IsA(cs, value, c)
                                       : IsA(cs, c, value) && (op == "is-a" || c != value);
      if (match) out.push_back(c);
    }
    return out;
  }
  if ((op == "=" || op == "in") && (property == "concept" || property == "code")) {
    std::unordered_set<std::string> wanted;
    for (size_t start = 0;;) {
      size_t comma = op == "in" ? value.find(',', start) : std::string::npos;
      wanted.insert(value.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    for (const auto& c : cs.codes) {
      if (wanted.count(c)) out.push_back(c);
    }
    return out;
  }
  if (op == "regex" && (property == "concept" || property == "code")) {
    RE2 re(value, RE2::Quiet);
    if (!re.ok()) return Status::Invalid("bad regex in a ValueSet filter on " + system);
    for (const auto& c : cs.codes) {
      if (RE2::FullMatch(c, re)) out.push_back(c);
    }
    return out;
  }
  return Status::Make(StatusCode::kNotImplemented, "the ValueSet filter '" + property + " " + op +
                                                       "' on " + system + " is not supported");
}

Status Terminology::AddIncludes(const json::value* includes, bool exclude, Expansion& out,
                                int depth) const {
  if (!includes || !includes->is_array()) return Status::Ok();
  for (const auto& inc_value : includes->get_array()) {
    if (!inc_value.is_object()) continue;
    const json::object& inc = inc_value.get_object();
    std::string system(GetString(inc, "system"));
    // The codes this include selects from its system (all of it if neither concepts nor
    // filters narrow it), as system|code keys.
    std::optional<std::unordered_set<std::string>> selected;
    if (!system.empty()) {
      selected.emplace();
      const json::value* concepts = FindKey(inc, "concept");
      const json::value* filters = FindKey(inc, "filter");
      bool has_concepts = concepts && concepts->is_array() && !concepts->get_array().empty();
      bool has_filters = filters && filters->is_array() && !filters->get_array().empty();
      if (has_concepts) {
        for (const auto& c : concepts->get_array()) {
          if (c.is_object()) selected->insert(Key(system, GetString(c.get_object(), "code")));
        }
      } else {
        auto cs = FindCodeSystem(system);
        if (!cs) {
          return Status::Make(StatusCode::kNotImplemented,
                              "the code system " + system + " is not known to this server");
        }
        if (!has_filters && !cs->complete) {
          return Status::Make(StatusCode::kNotImplemented,
                              "the code system " + system + " is not held in full");
        }
        std::optional<std::unordered_set<std::string>> codes;
        if (has_filters) {
          for (const auto& f : filters->get_array()) {
            if (!f.is_object()) continue;
            ASSIGN_OR_RETURN(auto matched, Filter(*cs, system, f.get_object()));
            std::unordered_set<std::string> these(matched.begin(), matched.end());
            if (!codes) {
              codes = std::move(these);
            } else {  // filters combine with AND
              std::unordered_set<std::string> both;
              for (const auto& c : *codes) {
                if (these.count(c)) both.insert(c);
              }
              codes = std::move(both);
            }
          }
        } else {
          codes.emplace(cs->codes.begin(), cs->codes.end());
        }
        for (const auto& c : *codes) selected->insert(Key(system, c));
      }
    }
    // Imported value sets intersect with each other and with the system part.
    if (const json::value* imports = FindKey(inc, "valueSet"); imports && imports->is_array()) {
      for (const auto& imp : imports->get_array()) {
        if (!imp.is_string()) continue;
        ASSIGN_OR_RETURN(auto other,
                         Expand(StripVersion(std::string(imp.get_string())), depth + 1));
        if (!selected) {
          selected = other->members;
        } else {
          std::unordered_set<std::string> both;
          for (const auto& k : *selected) {
            if (other->members.count(k)) both.insert(k);
          }
          selected = std::move(both);
        }
      }
    }
    if (!selected) continue;
    for (const auto& k : *selected) {
      if (exclude) {
        out.members.erase(k);
      } else {
        out.members.insert(k);
        out.systems.insert(k.substr(0, k.rfind('|')));
      }
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<const Terminology::Expansion>> Terminology::Expand(const std::string& url,
                                                                          int depth) const {
  if (depth > kMaxDepth) return Status::Invalid("value sets import each other too deeply: " + url);
  {
    std::lock_guard lock(mu_);
    if (auto it = expansions_.find(url); it != expansions_.end()) return it->second;
  }
  auto vs = FindValueSet(url);
  if (!vs) return Status::NotFound("the value set " + url + " is not known to this server");
  auto out = std::make_shared<Expansion>();
  const json::value* expansion = FindKey(*vs, "expansion");
  const json::value* contains =
      expansion && expansion->is_object() ? FindKey(expansion->get_object(), "contains") : nullptr;
  if (contains && contains->is_array()) {
    std::function<void(const json::array&)> walk = [&](const json::array& items) {
      for (const auto& c : items) {
        if (!c.is_object()) continue;
        std::string_view system = GetString(c.get_object(), "system");
        std::string_view code = GetString(c.get_object(), "code");
        if (!code.empty()) {
          out->members.insert(Key(system, code));
          out->systems.insert(std::string(system));
        }
        if (const json::value* more = FindKey(c.get_object(), "contains");
            more && more->is_array()) {
          walk(more->get_array());
        }
      }
    };
    walk(contains->get_array());
  } else if (const json::value* compose = FindKey(*vs, "compose");
             compose && compose->is_object()) {
    RETURN_IF_ERROR(AddIncludes(FindKey(compose->get_object(), "include"), false, *out, depth));
    RETURN_IF_ERROR(AddIncludes(FindKey(compose->get_object(), "exclude"), true, *out, depth));
  } else {
    return Status::Make(StatusCode::kNotImplemented,
                        "the value set " + url + " has neither an expansion nor a compose");
  }
  std::lock_guard lock(mu_);
  expansions_[url] = out;
  return std::shared_ptr<const Expansion>(out);
}

Result<bool> Terminology::Contains(const std::string& valueset_url, const std::string& system,
                                   const std::string& code) const {
  ASSIGN_OR_RETURN(auto e, Expand(StripVersion(valueset_url), 0));
  return e->members.count(Key(system, code)) > 0;
}

Result<bool> Terminology::ContainsCode(const std::string& valueset_url,
                                       const std::string& code) const {
  ASSIGN_OR_RETURN(auto e, Expand(StripVersion(valueset_url), 0));
  if (e->systems.size() != 1) return false;
  return e->members.count(Key(*e->systems.begin(), code)) > 0;
}

Result<std::vector<std::pair<std::string, std::string>>> Terminology::Members(
    const std::string& valueset_url) const {
  ASSIGN_OR_RETURN(auto e, Expand(StripVersion(valueset_url), 0));
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(e->members.size());
  for (const auto& key : e->members) {
    size_t bar = key.rfind('|');
    out.emplace_back(key.substr(0, bar), key.substr(bar + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> Terminology::Related(const std::string& system,
                                                      const std::string& code, bool below) const {
  auto cs = FindCodeSystem(system);
  if (!cs) return Status::NotFound("the code system " + system + " is not known to this server");
  std::vector<std::string> out;
  for (const auto& c : cs->codes) {
    if (below ? IsA(*cs, c, code) : IsA(*cs, code, c)) out.push_back(c);
  }
  if (out.empty()) out.push_back(code);
  return out;
}

Result<std::vector<std::string>> Terminology::Below(const std::string& system,
                                                    const std::string& code) const {
  return Related(system, code, /*below=*/true);
}

Result<std::vector<std::string>> Terminology::Above(const std::string& system,
                                                    const std::string& code) const {
  return Related(system, code, /*below=*/false);
}

Result<bool> Terminology::Subsumes(const std::string& system, const std::string& a,
                                   const std::string& b) const {
  auto cs = FindCodeSystem(system);
  if (!cs) return Status::NotFound("the code system " + system + " is not known to this server");
  return IsA(*cs, b, a);
}

const Terminology& R4Terminology() {
  static const Terminology* terminology = [] {
    auto* t = new Terminology();
    auto text = ZstdDecompress(EmbeddedFile("r4/valuesets.json.zst"));
    auto bundle = text.ok() ? ParseJson(*text) : Result<json::value>(text.status());
    if (!bundle.ok() || !bundle->is_object()) {
      LogError("embedded R4 value sets are unreadable");
      std::abort();
    }
    if (const json::value* entries = FindKey(bundle->get_object(), "entry");
        entries && entries->is_array()) {
      for (const auto& e : entries->get_array()) {
        const json::value* r = e.is_object() ? FindKey(e.get_object(), "resource") : nullptr;
        if (r && r->is_object()) (void)t->Add(r->get_object());
      }
    }
    return t;
  }();
  return *terminology;
}

}  // namespace taproot::fhir
