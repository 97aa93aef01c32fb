#include "search/indexer.h"

#include <atomic>
#include <deque>
#include <limits>

#include "common/json.h"
#include "fhir/ucum.h"
#include "search/normalize.h"
#include "search/params.h"

namespace taproot::search {
namespace {

using store::IndexEntry;
using store::IndexKind;

constexpr std::string_view kUcum = "http://unitsofmeasure.org";

std::string_view Str(const json::object& o, std::string_view key) { return GetString(o, key); }

// `Type/id`, `Type/id/_history/n`, or an absolute URL ending in one: the type and id.
bool SplitReference(std::string_view ref, std::string_view& type, std::string_view& id) {
  size_t hist = ref.find("/_history/");
  if (hist != std::string_view::npos) ref = ref.substr(0, hist);
  size_t slash = ref.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  size_t prev = ref.rfind('/', slash - 1);
  type = ref.substr(prev == std::string_view::npos ? 0 : prev + 1,
                    slash - (prev == std::string_view::npos ? 0 : prev + 1));
  id = ref.substr(slash + 1);
  return !id.empty() && fhir::R4().FindResource(type) != nullptr;
}

class Extractor {
 public:
  Extractor(const ParamDef& p, std::vector<IndexEntry>& out) : p_(p), out_(out) {}

  void Add(const fhirpath::Item& item) {
    if (!item.IsNode()) {  // a System value an expression computed (rare in R4 parameters)
      if (item.kind == fhirpath::Item::Kind::kString) Primitive(item.string);
      return;
    }
    if (!item.value || !item.type) return;
    const std::string& t = item.type->name;
    const json::value& v = *item.value;
    if (v.is_string()) return Primitive(v.get_string(), t);
    if (v.is_bool()) return Primitive(v.get_bool() ? "true" : "false", t);
    if (v.is_number()) return Number(v.to_number<double>());
    if (!v.is_object()) return;
    const json::object& o = v.get_object();
    switch (p_.type) {
      case ParamType::kString:
        if (t == "HumanName") {
          Each(o, "given", [&](std::string_view s) { String(s); });
          Each(o, "prefix", [&](std::string_view s) { String(s); });
          Each(o, "suffix", [&](std::string_view s) { String(s); });
          String(Str(o, "family"));
          String(Str(o, "text"));
        } else if (t == "Address") {
          Each(o, "line", [&](std::string_view s) { String(s); });
          for (const char* k : {"city", "district", "state", "postalCode", "country", "text"}) {
            String(Str(o, k));
          }
        }
        break;
      case ParamType::kToken:
        if (t == "Coding") {
          Coding(o);
        } else if (t == "CodeableConcept") {
          if (const json::value* cs = FindKey(o, "coding"); cs && cs->is_array()) {
            for (const auto& c : cs->get_array()) {
              if (c.is_object()) Coding(c.get_object());
            }
          }
          Text(Str(o, "text"));
        } else if (t == "Identifier") {
          Token(Str(o, "system"), Str(o, "value"));
          if (const json::value* type = FindKey(o, "type"); type && type->is_object()) {
            if (const json::value* tt = FindKey(type->get_object(), "text"); tt && tt->is_string())
              Text(tt->get_string());
            // :of-type: the identifier's value under "<param>:of-type", with its type's
            // system|code as the system.
            std::string_view value = Str(o, "value");
            const json::value* codings = FindKey(type->get_object(), "coding");
            if (!value.empty() && codings && codings->is_array()) {
              for (const auto& c : codings->get_array()) {
                if (!c.is_object() || Str(c.get_object(), "code").empty()) continue;
                out_.push_back({p_.code + ":of-type", IndexKind::kToken,
                                std::string(Str(c.get_object(), "system")) + "|" +
                                    std::string(Str(c.get_object(), "code")),
                                std::string(value)});
              }
            }
          }
        } else if (t == "ContactPoint") {
          Token("", Str(o, "value"));
        }
        break;
      case ParamType::kReference:
        if (t == "Reference") {
          Reference(Str(o, "reference"));
          if (const json::value* ident = FindKey(o, "identifier"); ident && ident->is_object()) {
            const json::object& io = ident->get_object();
            if (!Str(io, "value").empty()) {
              out_.push_back({p_.code + ":identifier", IndexKind::kToken,
                              std::string(Str(io, "system")), std::string(Str(io, "value"))});
            }
          }
        }
        break;
      case ParamType::kDate:
        if (t == "Period") {
          auto s = DateRange(Str(o, "start"));
          auto e = DateRange(Str(o, "end"));
          if (!s && !e) break;
          IndexEntry row{p_.code, IndexKind::kDate};
          row.start = s ? s->start : std::numeric_limits<int64_t>::min();
          row.end = e ? e->end : std::numeric_limits<int64_t>::max();
          out_.push_back(std::move(row));
        } else if (t == "Timing") {
          Each(o, "event", [&](std::string_view s) { Date(s); });
        }
        break;
      case ParamType::kQuantity:
        Quantity(o, t);
        break;
      default:
        break;
    }
  }

 private:
  template <typename F>
  static void Each(const json::object& o, std::string_view key, F&& f) {
    const json::value* v = FindKey(o, key);
    if (!v) return;
    if (v->is_string()) f(std::string_view(v->get_string()));
    if (!v->is_array()) return;
    for (const auto& e : v->get_array()) {
      if (e.is_string()) f(std::string_view(e.get_string()));
    }
  }

  void Primitive(std::string_view s, const std::string& fhir_type = "string") {
    switch (p_.type) {
      case ParamType::kString:
        String(s);
        break;
      case ParamType::kToken:
        Token("", s);
        break;
      case ParamType::kUri:
        if (!s.empty()) out_.push_back({p_.code, IndexKind::kUri, "", std::string(s)});
        break;
      case ParamType::kReference:  // canonical and uri elements
        Reference(s);
        break;
      case ParamType::kDate:
        Date(s);
        break;
      case ParamType::kNumber:
        Number(std::strtod(std::string(s).c_str(), nullptr));
        break;
      default:
        break;
    }
    (void)fhir_type;
  }

  void String(std::string_view s) {
    if (s.empty()) return;
    IndexEntry row{p_.code, IndexKind::kString, "", NormalizeText(s)};
    row.text = std::string(s);
    out_.push_back(std::move(row));
  }
  // Display text of a token, for :text, which matches the folded text only: the text as
  // written (for :exact, which tokens do not take) is left out to keep the rows small.
  void Text(std::string_view s) {
    if (s.empty()) return;
    out_.push_back({p_.code + ":text", IndexKind::kString, "", NormalizeText(s)});
  }
  void Token(std::string_view system, std::string_view code) {
    if (code.empty()) return;
    out_.push_back({p_.code, IndexKind::kToken, std::string(system), std::string(code)});
  }
  void Coding(const json::object& c) {
    Token(Str(c, "system"), Str(c, "code"));
    Text(Str(c, "display"));
  }
  void Reference(std::string_view ref) {
    if (ref.empty() || ref[0] == '#') return;  // contained: not searchable by reference
    std::string_view type, id;
    if (SplitReference(ref, type, id)) {
      out_.push_back({p_.code, IndexKind::kReference, std::string(type), std::string(id)});
    } else {
      out_.push_back({p_.code, IndexKind::kReference, "", std::string(ref)});
    }
  }
  void Date(std::string_view s) {
    auto r = DateRange(s);
    if (!r) return;
    IndexEntry row{p_.code, IndexKind::kDate};
    row.start = r->start;
    row.end = r->end;
    out_.push_back(std::move(row));
  }
  void Number(double d) {
    IndexEntry row{p_.code,
                   p_.type == ParamType::kQuantity ? IndexKind::kQuantity : IndexKind::kNumber};
    if (p_.type != ParamType::kNumber && p_.type != ParamType::kQuantity) return;
    row.number = d;
    out_.push_back(std::move(row));
  }
  void Quantity(const json::object& o, const std::string& t) {
    const json::value* value = FindKey(o, "value");
    if (!value || !value->is_number()) return;
    double d = value->to_number<double>();
    std::string system(Str(o, "system"));
    std::string code(Str(o, "code"));
    if (t == "Money") code = std::string(Str(o, "currency"));
    if (code.empty()) code = std::string(Str(o, "unit"));
    IndexEntry row{p_.code, IndexKind::kQuantity, system, code};
    row.number = d;
    out_.push_back(row);
    // Also in UCUM base units, so 5.5 mmol/L is found by a search in umol/L.
    if (system == kUcum || system.empty()) {
      if (auto canonical = fhir::ucum::Parse(code); canonical.ok() && canonical->offset == 0) {
        // Under their own parameter name, so a search without a unit sees only the values as
        // written.
        IndexEntry base{p_.code + std::string(kUcumParamSuffix), IndexKind::kQuantity,
                        std::string(kUcumCanonicalSystem), canonical->UnitText()};
        base.number = d * canonical->factor;
        out_.push_back(std::move(base));
      }
    }
  }

  const ParamDef& p_;
  std::vector<IndexEntry>& out_;
};

}  // namespace

namespace {

// Evaluates one parameter over a resource and appends its rows.
// A composite parameter (code-value-quantity and the like): for each value the parameter selects,
// its second component's rows, filed under the first component's value so a search finds them
// by it with the second's own index and prefixes (search/query.cc builds the same names): a
// token as "<code>$<system>|<code>" and "<code>$<code>", a reference (R4's only other leading
// type, DocumentReference's relationship) as "<code>$<Type>/<id>" and "<code>$<id>".
void ExtractComposite(const ParamDef& p, const json::value& resource,
                      const fhirpath::EvalOptions& options, std::vector<IndexEntry>& out) {
  if (p.components.size() != 2) return;
  const ParamDef::Component& first = p.components[0];
  const ParamDef::Component& second = p.components[1];
  if (!first.param || !second.param || !first.expression || !second.expression ||
      (first.param->type != ParamType::kToken && first.param->type != ParamType::kReference)) {
    return;
  }
  fhirpath::Item root;
  root.value = &resource;
  root.type = fhir::R4().FindResource(
      resource.is_object() ? GetString(resource.get_object(), "resourceType") : "");
  for (const auto& branch : p.branches) {
    auto items = branch->Evaluate(resource, options);
    if (!items.ok()) continue;
    for (const auto& item : *items) {
      std::vector<IndexEntry> keys, values;
      Extractor key_extractor(*first.param, keys);
      Extractor value_extractor(*second.param, values);
      auto k = first.expression->Evaluate(item, root, options);
      auto v = second.expression->Evaluate(item, root, options);
      if (!k.ok() || !v.ok()) continue;
      for (const auto& i : *k) key_extractor.Add(i);
      for (const auto& i : *v) value_extractor.Add(i);
      for (const IndexEntry& key : keys) {
        if (key.param != first.param->code) continue;
        std::string qualified;
        if (key.kind == IndexKind::kToken) {
          qualified = key.system + "|" + key.value;
        } else if (key.kind == IndexKind::kReference && !key.system.empty()) {
          qualified = key.system + "/" + key.value;
        } else {
          continue;
        }
        for (const std::string& name : {p.code + "$" + qualified, p.code + "$" + key.value}) {
          for (const IndexEntry& value : values) {
            // Keep a suffix the value's own parameter added (":ucum"), but not the display
            // text rows of a token (":text"): composites take no modifiers.
            std::string suffix = value.param.substr(second.param->code.size());
            if (suffix == ":text") continue;
            IndexEntry row = value;
            row.param = name + suffix;
            out.push_back(std::move(row));
          }
        }
      }
    }
  }
}

// Evaluation options for indexing one resource. resolve(): `subject.where(resolve() is Patient)`
// needs only the target's type, which the reference itself names, so a minimal resource
// {resourceType, id} stands in for the target; `targets` owns those and must outlive the options.
fhirpath::EvalOptions IndexingOptions(std::deque<json::value>& targets) {
  fhirpath::EvalOptions options;
  options.as_filters = true;
  options.resolve = [&targets](const std::string& ref) -> const json::value* {
    std::string_view t, id;
    if (!SplitReference(ref, t, id)) return nullptr;
    targets.push_back(json::object{{"resourceType", t}, {"id", id}});
    return &targets.back();
  };
  return options;
}

void ExtractOne(const ParamDef& p, const json::value& resource,
                const fhirpath::EvalOptions& options, std::vector<IndexEntry>& out) {
  if (p.type == ParamType::kComposite) return ExtractComposite(p, resource, options, out);
  Extractor extractor(p, out);
  for (const auto& branch : p.branches) {
    auto items = branch->Evaluate(resource, options);
    if (!items.ok()) continue;  // an expression that fails on this resource indexes nothing
    for (const auto& item : *items) extractor.Add(item);
  }
}

}  // namespace

namespace {

// The words of an XHTML narrative: tags dropped, the common entities decoded.
std::string NarrativeText(std::string_view div) {
  std::string out;
  out.reserve(div.size());
  bool in_tag = false;
  for (size_t i = 0; i < div.size(); ++i) {
    char c = div[i];
    if (c == '<') {
      in_tag = true;
      out.push_back(' ');
    } else if (c == '>') {
      in_tag = false;
    } else if (!in_tag) {
      if (c == '&') {
        static const std::pair<std::string_view, char> kEntities[] = {
            {"&amp;", '&'},  {"&lt;", '<'},   {"&gt;", '>'},
            {"&quot;", '"'}, {"&#39;", '\''}, {"&nbsp;", ' '}};
        bool done = false;
        for (auto [entity, ch] : kEntities) {
          if (div.substr(i, entity.size()) == entity) {
            out.push_back(ch);
            i += entity.size() - 1;
            done = true;
            break;
          }
        }
        if (done) continue;
      }
      out.push_back(c);
    }
  }
  return out;
}

// Every string of a resource (narrative as text, attachments' data left out), for _content.
void ContentText(const json::value& v, std::string_view key, std::string& out) {
  if (out.size() > 32768) return;  // enough to find a resource by its words
  if (v.is_string()) {
    if (key == "data") return;
    if (key == "div") {
      out += NarrativeText(v.get_string());
    } else {
      out.append(v.get_string().data(), v.get_string().size());
    }
    out.push_back(' ');
  } else if (v.is_object()) {
    for (const auto& kv : v.get_object()) ContentText(kv.value(), kv.key(), out);
  } else if (v.is_array()) {
    for (const auto& e : v.get_array()) ContentText(e, key, out);
  }
}

std::atomic<bool> content_indexing{false};
std::atomic<bool> search_indexing{true};

}  // namespace

void SetContentIndexing(bool on) { content_indexing = on; }
bool ContentIndexing() { return content_indexing; }
void SetSearchIndexing(bool on) { search_indexing = on; }
bool SearchIndexing() { return search_indexing; }

std::vector<IndexEntry> ExtractIndex(const fhir::Model& model, std::string_view type,
                                     const json::value& resource) {
  (void)model;
  std::vector<IndexEntry> out;
  const bool all = search_indexing;
  if (all && resource.is_object()) {
    // _text and _content have no FHIRPath expression: the narrative and the whole resource.
    const json::object& r = resource.get_object();
    if (R4Params().Find(type, "_text")) {
      if (const json::value* text = FindKey(r, "text"); text && text->is_object()) {
        std::string words = NarrativeText(GetString(text->get_object(), "div"));
        if (!words.empty()) out.push_back({"_text", IndexKind::kText, "", std::move(words)});
      }
    }
    if (content_indexing) {
      std::string content;
      ContentText(resource, "", content);
      if (!content.empty()) out.push_back({"_content", IndexKind::kText, "", std::move(content)});
    }
  }
  std::deque<json::value> targets;
  fhirpath::EvalOptions options = IndexingOptions(targets);
  for (const ParamDef* p : R4Params().ForType(type)) {
    if (p->type == ParamType::kSpecial) continue;
    // _id and _lastUpdated live in the store's own columns.
    if (p->code == "_id" || p->code == "_lastUpdated") continue;
    if (!all && p->code != "identifier") continue;
    if (!p->union_of.empty()) continue;  // its parts' rows answer for it
    ExtractOne(*p, resource, options, out);
  }
  return out;
}

std::vector<IndexEntry> ExtractParam(const ParamDef& param, const json::value& resource) {
  std::vector<IndexEntry> out;
  std::deque<json::value> targets;
  ExtractOne(param, resource, IndexingOptions(targets), out);
  return out;
}

}  // namespace taproot::search
