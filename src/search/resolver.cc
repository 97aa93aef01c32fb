#include "search/resolver.h"

#include "common/json.h"
#include "fhir/model.h"

namespace taproot::search {
namespace {

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace

StoreResolver::StoreResolver(store::ReadView& view, std::string base_url)
    : view_(view), base_url_(std::move(base_url)) {
  while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
}

void StoreResolver::Attach(fhirpath::EvalOptions& options) {
  options.resolve = [this](const std::string& reference) { return Resolve(reference); };
}

const json::value* StoreResolver::Resolve(const std::string& reference) {
  if (auto it = by_reference_.find(reference); it != by_reference_.end()) return it->second;
  const json::value* found = nullptr;
  // Relative "Type/id[/_history/vid]", or the same under this server's base.
  std::string_view rel = reference;
  if (!base_url_.empty() && rel.size() > base_url_.size() + 1 &&
      rel.substr(0, base_url_.size()) == base_url_ && rel[base_url_.size()] == '/') {
    rel.remove_prefix(base_url_.size() + 1);
  }
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t slash = rel.find('/', start);
    parts.push_back(rel.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  bool shape_ok = (parts.size() == 2 || (parts.size() == 4 && parts[2] == "_history")) &&
                  fhir::R4().FindResource(parts[0]) && ValidId(parts[1]);
  if (shape_ok) {
    std::string type(parts[0]), id(parts[1]);
    Result<std::optional<store::VersionRecord>> record = std::optional<store::VersionRecord>();
    if (parts.size() == 2) {
      record = view_.ReadCurrent(type, id);
    } else {
      char* end = nullptr;
      std::string vid(parts[3]);
      long long v = std::strtoll(vid.c_str(), &end, 10);
      if (!vid.empty() && *end == '\0' && v > 0) record = view_.ReadVersion(type, id, v);
    }
    if (record.ok() && *record && !(*record)->deleted) {
      const store::VersionRecord& r = **record;
      if (auto parsed = ParseJson(store::WithVersionMeta(r.json, r.version, r.last_updated));
          parsed.ok()) {
        loaded_.push_back(std::move(parsed).value());
        found = &loaded_.back();
      }
    }
  }
  by_reference_.emplace(reference, found);
  return found;
}

namespace {

// The current resource of `type` with canonical `url`, through the url index.
Result<std::optional<json::value>> FindCanonical(store::ReadView& view, const std::string& type,
                                                 const std::string& url) {
  store::SearchQuery q;
  q.type = type;
  store::IndexClause url_clause;
  url_clause.param = "url";
  url_clause.kind = store::IndexKind::kUri;
  url_clause.any_of.emplace_back();
  url_clause.any_of.back().value = url;
  q.clauses.push_back(std::move(url_clause));
  q.count = 1;
  q.want_total = false;
  ASSIGN_OR_RETURN(store::SearchPage page, view.Search(q));
  if (page.resources.empty()) return std::optional<json::value>();
  ASSIGN_OR_RETURN(json::value v, ParseJson(page.resources.front().json));
  return std::optional<json::value>(std::move(v));
}

}  // namespace

fhir::Terminology::Loader StoreTerminologyLoader(store::Store& store) {
  return [&store](const std::string& type, const std::string& url) -> std::optional<json::value> {
    std::optional<json::value> found;
    Status st = store.ReadStatement([&](store::ReadView& view) -> Status {
      ASSIGN_OR_RETURN(found, FindCanonical(view, type, url));
      return Status::Ok();
    });
    if (!st.ok()) return std::nullopt;
    return found;
  };
}

fhir::Terminology::Loader ViewTerminologyLoader(store::ReadView& view) {
  return [&view](const std::string& type, const std::string& url) -> std::optional<json::value> {
    auto found = FindCanonical(view, type, url);
    return found.ok() ? std::move(found).value() : std::nullopt;
  };
}

}  // namespace taproot::search
