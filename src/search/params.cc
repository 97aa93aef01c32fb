#include "search/params.h"

#include <algorithm>
#include <set>

#include "common/compress.h"
#include "common/embedded.h"
#include "common/json.h"
#include "common/log.h"

namespace taproot::search {
namespace {

ParamType TypeOf(std::string_view t) {
  if (t == "string") return ParamType::kString;
  if (t == "token") return ParamType::kToken;
  if (t == "reference") return ParamType::kReference;
  if (t == "date") return ParamType::kDate;
  if (t == "number") return ParamType::kNumber;
  if (t == "quantity") return ParamType::kQuantity;
  if (t == "uri") return ParamType::kUri;
  if (t == "composite") return ParamType::kComposite;
  return ParamType::kSpecial;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The resource type a branch starts from ("Observation" of "(Observation.value as Quantity)"),
// or empty if it does not start with a name.
std::string_view LeadingName(std::string_view branch) {
  while (!branch.empty() && (branch.front() == '(' || branch.front() == ' ')) {
    branch.remove_prefix(1);
  }
  size_t n = 0;
  while (n < branch.size() && std::isalnum(static_cast<unsigned char>(branch[n]))) ++n;
  return branch.substr(0, n);
}

std::vector<std::string> StringArray(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  const json::value* v = FindKey(o, key);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->get_array()) {
    if (e.is_string()) out.emplace_back(e.get_string());
  }
  return out;
}

}  // namespace

std::vector<std::string> SplitUnion(std::string_view expression) {
  std::vector<std::string> out;
  int depth = 0;
  char quote = 0;
  size_t start = 0;
  for (size_t i = 0; i < expression.size(); ++i) {
    char c = expression[i];
    if (quote) {
      if (c == '\\') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '\'' || c == '`' || c == '"') {
      quote = c;
    } else if (c == '(' || c == '[' || c == '{') {
      ++depth;
    } else if (c == ')' || c == ']' || c == '}') {
      --depth;
    } else if (c == '|' && depth == 0) {
      out.emplace_back(Trim(expression.substr(start, i - start)));
      start = i + 1;
    }
  }
  out.emplace_back(Trim(expression.substr(start)));
  out.erase(std::remove(out.begin(), out.end(), std::string()), out.end());
  return out;
}

namespace {

bool SameComponents(const ParamDef& a, const ParamDef& b) {
  if (a.components.size() != b.components.size()) return false;
  for (size_t i = 0; i < a.components.size(); ++i) {
    const auto& x = a.components[i];
    const auto& y = b.components[i];
    if (!x.param || !y.param || x.param->type != y.param->type || x.text != y.text) return false;
  }
  return true;
}

// Marks the parameters of one type that are unions of others (ParamDef::union_of). Smaller
// parameters are settled first, so a union is always expressed in parameters that have rows.
void FindUnions(std::vector<const ParamDef*>& params) {
  std::vector<ParamDef*> by_size;
  for (const ParamDef* p : params) by_size.push_back(const_cast<ParamDef*>(p));
  std::stable_sort(by_size.begin(), by_size.end(), [](const ParamDef* a, const ParamDef* b) {
    return a->branch_texts.size() < b->branch_texts.size();
  });
  for (ParamDef* p : by_size) {
    if (p->branch_texts.size() < 2 || p->type == ParamType::kReference ||
        p->type == ParamType::kSpecial) {
      continue;
    }
    std::set<std::string> mine(p->branch_texts.begin(), p->branch_texts.end());
    std::set<std::string> covered;
    std::vector<const ParamDef*> parts;
    for (const ParamDef* q : by_size) {
      if (q == p || q->type != p->type || q->branch_texts.empty() ||
          q->branch_texts.size() >= p->branch_texts.size()) {
        continue;
      }
      if (!std::all_of(q->branch_texts.begin(), q->branch_texts.end(),
                       [&](const std::string& b) { return mine.count(b) > 0; })) {
        continue;
      }
      if (p->type == ParamType::kComposite && !SameComponents(*p, *q)) continue;
      covered.insert(q->branch_texts.begin(), q->branch_texts.end());
      if (q->union_of.empty()) {
        parts.push_back(q);
      } else {
        parts.insert(parts.end(), q->union_of.begin(), q->union_of.end());
      }
    }
    if (covered == mine) {
      std::sort(parts.begin(), parts.end());
      parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
      p->union_of = std::move(parts);
    }
  }
}

// ParamDef::only_target: the one type a reference parameter can index, or empty.
std::string OnlyTarget(const ParamDef& def) {
  if (def.targets.size() == 1) return def.targets[0];
  static constexpr std::string_view kResolveIs = ".where(resolve() is ";
  std::string common;
  for (const std::string& b : def.branch_texts) {
    size_t at = b.rfind(kResolveIs);
    if (at == std::string::npos || b.back() != ')') return {};
    std::string t = b.substr(at + kResolveIs.size(), b.size() - 1 - at - kResolveIs.size());
    if (t.empty() || (!common.empty() && t != common)) return {};
    common = t;
  }
  return common;
}

}  // namespace

Result<std::unique_ptr<ParamRegistry>> ParamRegistry::Build(const fhir::Model& model,
                                                            std::string_view bundle_json) {
  ASSIGN_OR_RETURN(json::value bundle, ParseJson(bundle_json));
  auto reg = std::make_unique<ParamRegistry>();
  const json::value* entries = FindKey(bundle.as_object(), "entry");
  if (!entries || !entries->is_array()) return Status::Invalid("no SearchParameter entries");
  std::unordered_map<std::string, const ParamDef*> by_type_url;  // "Type|url"
  for (const auto& e : entries->get_array()) {
    const json::value* r = e.is_object() ? FindKey(e.get_object(), "resource") : nullptr;
    if (!r || !r->is_object()) continue;
    const json::object& sp = r->get_object();
    std::string code(GetString(sp, "code"));
    std::string expression(GetString(sp, "expression"));
    std::vector<std::string> bases;
    for (const auto& b : StringArray(sp, "base")) {
      if (b == "Resource" || b == "DomainResource") {
        for (const auto& t : model.ResourceTypes()) {
          if (b == "DomainResource" && (t == "Bundle" || t == "Binary" || t == "Parameters")) {
            continue;
          }
          bases.push_back(t);
        }
      } else {
        bases.push_back(b);
      }
    }
    std::vector<std::string> branches = SplitUnion(expression);
    for (const auto& type : bases) {
      if (reg->by_type_code_.count(type + "|" + code)) continue;  // first definition wins
      auto def = std::make_unique<ParamDef>();
      def->code = code;
      def->url = std::string(GetString(sp, "url"));
      def->type = TypeOf(GetString(sp, "type"));
      def->targets = StringArray(sp, "target");
      for (const auto& branch : branches) {
        std::string_view lead = LeadingName(branch);
        bool generic = lead == "Resource" || lead == "DomainResource" || !model.FindResource(lead);
        if (!generic && lead != type) continue;
        auto compiled = fhirpath::Compile(branch);
        if (!compiled.ok()) {
          LogWarn("search parameter " + def->url + ": cannot compile '" + branch +
                  "': " + compiled.status().message());
          continue;
        }
        def->expression += (def->expression.empty() ? "" : " | ") + branch;
        def->branches.push_back(std::move(compiled).value());
        def->branch_texts.push_back(branch);
      }
      if (def->type == ParamType::kComposite) {
        if (const json::value* comps = FindKey(sp, "component"); comps && comps->is_array()) {
          for (const auto& c : comps->get_array()) {
            if (!c.is_object()) continue;
            def->composite_of.emplace_back(GetString(c.get_object(), "definition"));
            ParamDef::Component comp;
            std::string_view expr = GetString(c.get_object(), "expression");
            // R4 erratum: DocumentReference-relationship gives its components' expressions
            // the wrong way round (relatesto with "code", relation with "target"); R5 fixed it.
            if (def->url == "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship") {
              if (expr == "code") {
                expr = "target";
              } else if (expr == "target") {
                expr = "code";
              }
            }
            auto compiled = fhirpath::Compile(expr);
            if (compiled.ok()) comp.expression = std::move(compiled).value();
            comp.text = std::string(expr);
            def->components.push_back(std::move(comp));
          }
        }
      }
      // A parameter with an expression none of whose branches apply to this type is left out.
      if (!expression.empty() && def->branches.empty()) continue;
      const ParamDef* p = def.get();
      reg->by_type_code_[type + "|" + code] = p;
      by_type_url[type + "|" + def->url] = p;
      reg->by_type_[type].push_back(p);
      reg->owned_.push_back(std::move(def));
    }
  }
  // Resolve the components of composite parameters to the same type's parameters.
  for (auto& [type, params] : reg->by_type_) {
    for (const ParamDef* p : params) {
      auto* def = const_cast<ParamDef*>(p);
      for (size_t i = 0; i < def->composite_of.size() && i < def->components.size(); ++i) {
        auto it = by_type_url.find(type + "|" + def->composite_of[i]);
        if (it != by_type_url.end()) def->components[i].param = it->second;
      }
    }
    FindUnions(params);
    for (const ParamDef* p : params) {
      if (p->type == ParamType::kReference) const_cast<ParamDef*>(p)->only_target = OnlyTarget(*p);
    }
    std::sort(params.begin(), params.end(),
              [](const ParamDef* a, const ParamDef* b) { return a->code < b->code; });
  }
  return reg;
}

const ParamDef* ParamRegistry::Find(std::string_view type, std::string_view code) const {
  std::string key(type);
  key += '|';
  key += code;
  auto it = by_type_code_.find(key);
  return it == by_type_code_.end() ? nullptr : it->second;
}

const std::vector<const ParamDef*>& ParamRegistry::ForType(std::string_view type) const {
  static const std::vector<const ParamDef*> kNone;
  auto it = by_type_.find(std::string(type));
  return it == by_type_.end() ? kNone : it->second;
}

const ParamRegistry& R4Params() {
  static const ParamRegistry* registry = [] {
    auto text = ZstdDecompress(EmbeddedFile("r4/search-parameters.json.zst"));
    auto reg = text.ok() ? ParamRegistry::Build(fhir::R4(), *text)
                         : Result<std::unique_ptr<ParamRegistry>>(text.status());
    if (!reg.ok()) {
      LogError("embedded R4 search parameters are unreadable: " + reg.status().message());
      std::abort();
    }
    return reg->release();
  }();
  return *registry;
}

}  // namespace taproot::search
