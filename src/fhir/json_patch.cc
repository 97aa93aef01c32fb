#include "fhir/json_patch.h"

#include <boost/json.hpp>

#include "common/json.h"

namespace taproot::fhir {
namespace {

// Splits an RFC 6901 pointer into unescaped reference tokens.
Result<std::vector<std::string>> ParsePointer(std::string_view ptr) {
  std::vector<std::string> tokens;
  if (ptr.empty()) return tokens;
  if (ptr[0] != '/')
    return Status::Invalid("JSON pointer '" + std::string(ptr) + "' must start with '/'");
  size_t pos = 1;
  while (true) {
    size_t next = ptr.find('/', pos);
    std::string_view raw = ptr.substr(pos, next == std::string_view::npos ? ptr.npos : next - pos);
    std::string tok;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~') {
        if (i + 1 < raw.size() && raw[i + 1] == '0') {
          tok.push_back('~');
        } else if (i + 1 < raw.size() && raw[i + 1] == '1') {
          tok.push_back('/');
        } else {
          return Status::Invalid("bad escape in JSON pointer '" + std::string(ptr) + "'");
        }
        ++i;
      } else {
        tok.push_back(raw[i]);
      }
    }
    tokens.push_back(std::move(tok));
    if (next == std::string_view::npos) break;
    pos = next + 1;
  }
  return tokens;
}

Result<size_t> ArrayIndex(const std::string& tok, size_t size, bool allow_end) {
  if (tok == "-" && allow_end) return size;
  if (tok.empty() || (tok.size() > 1 && tok[0] == '0')) {
    return Status::Invalid("'" + tok + "' is not an array index");
  }
  size_t idx = 0;
  for (char c : tok) {
    if (c < '0' || c > '9') return Status::Invalid("'" + tok + "' is not an array index");
    idx = idx * 10 + static_cast<size_t>(c - '0');
    if (idx > 1000000000) return Status::Invalid("array index too large");
  }
  if (idx > size || (!allow_end && idx == size)) {
    return Status::Invalid("array index " + tok + " is out of bounds");
  }
  return idx;
}

// Resolves all tokens but the last; returns the parent container.
Result<json::value*> Parent(json::value& doc, const std::vector<std::string>& tokens) {
  json::value* cur = &doc;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (cur->is_object()) {
      auto* next = cur->get_object().if_contains(t);
      if (!next) return Status::Invalid("path segment '" + t + "' does not exist");
      cur = next;
    } else if (cur->is_array()) {
      ASSIGN_OR_RETURN(size_t idx, ArrayIndex(t, cur->get_array().size(), false));
      cur = &cur->get_array()[idx];
    } else {
      return Status::Invalid("path segment '" + t + "' is inside a primitive value");
    }
  }
  return cur;
}

Result<json::value> Get(json::value& doc, const std::vector<std::string>& tokens) {
  if (tokens.empty()) return doc;
  ASSIGN_OR_RETURN(json::value * parent, Parent(doc, tokens));
  const std::string& last = tokens.back();
  if (parent->is_object()) {
    auto* v = parent->get_object().if_contains(last);
    if (!v) return Status::Invalid("'" + last + "' does not exist");
    return *v;
  }
  if (parent->is_array()) {
    ASSIGN_OR_RETURN(size_t idx, ArrayIndex(last, parent->get_array().size(), false));
    return parent->get_array()[idx];
  }
  return Status::Invalid("cannot index into a primitive value");
}

Status Add(json::value& doc, const std::vector<std::string>& tokens, json::value v) {
  if (tokens.empty()) {
    doc = std::move(v);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(json::value * parent, Parent(doc, tokens));
  const std::string& last = tokens.back();
  if (parent->is_object()) {
    parent->get_object()[last] = std::move(v);
    return Status::Ok();
  }
  if (parent->is_array()) {
    json::array& arr = parent->get_array();
    ASSIGN_OR_RETURN(size_t idx, ArrayIndex(last, arr.size(), true));
    arr.insert(arr.begin() + static_cast<std::ptrdiff_t>(idx), std::move(v));
    return Status::Ok();
  }
  return Status::Invalid("cannot add inside a primitive value");
}

Result<json::value> Remove(json::value& doc, const std::vector<std::string>& tokens) {
  if (tokens.empty()) return Status::Invalid("cannot remove the whole document");
  ASSIGN_OR_RETURN(json::value * parent, Parent(doc, tokens));
  const std::string& last = tokens.back();
  if (parent->is_object()) {
    json::object& obj = parent->get_object();
    auto it = obj.find(last);
    if (it == obj.end()) return Status::Invalid("'" + last + "' does not exist");
    json::value old = it->value();
    obj.erase(it);
    return old;
  }
  if (parent->is_array()) {
    json::array& arr = parent->get_array();
    ASSIGN_OR_RETURN(size_t idx, ArrayIndex(last, arr.size(), false));
    json::value old = arr[idx];
    arr.erase(arr.begin() + static_cast<std::ptrdiff_t>(idx));
    return old;
  }
  return Status::Invalid("cannot remove inside a primitive value");
}

bool IsPrefix(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() >= b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

Status ApplyOne(json::value& doc, const json::object& op) {
  std::string_view name = GetString(op, "op");
  auto* path_v = op.if_contains("path");
  if (!path_v || !path_v->is_string()) return Status::Invalid("the operation has no 'path'");
  ASSIGN_OR_RETURN(auto path, ParsePointer(std::string_view(path_v->get_string())));
  auto from_tokens = [&]() -> Result<std::vector<std::string>> {
    auto* f = op.if_contains("from");
    if (!f || !f->is_string()) return Status::Invalid("'" + std::string(name) + "' needs 'from'");
    return ParsePointer(std::string_view(f->get_string()));
  };
  auto value = [&]() -> Result<json::value> {
    auto* v = op.if_contains("value");
    if (!v) return Status::Invalid("'" + std::string(name) + "' needs 'value'");
    return *v;
  };
  if (name == "add") {
    ASSIGN_OR_RETURN(json::value v, value());
    return Add(doc, path, std::move(v));
  }
  if (name == "remove") return Remove(doc, path).status();
  if (name == "replace") {
    ASSIGN_OR_RETURN(json::value v, value());
    RETURN_IF_ERROR(Remove(doc, path).status());
    return Add(doc, path, std::move(v));
  }
  if (name == "move") {
    ASSIGN_OR_RETURN(auto from, from_tokens());
    if (IsPrefix(from, path)) return Status::Invalid("cannot move a value into itself");
    ASSIGN_OR_RETURN(json::value v, Remove(doc, from));
    return Add(doc, path, std::move(v));
  }
  if (name == "copy") {
    ASSIGN_OR_RETURN(auto from, from_tokens());
    ASSIGN_OR_RETURN(json::value v, Get(doc, from));
    return Add(doc, path, std::move(v));
  }
  if (name == "test") {
    ASSIGN_OR_RETURN(json::value expected, value());
    ASSIGN_OR_RETURN(json::value actual, Get(doc, path));
    if (actual != expected) return Status::Unprocessable("test failed: the value differs");
    return Status::Ok();
  }
  return Status::Invalid("unknown operation '" + std::string(name) + "'");
}

}  // namespace

Result<json::value> ApplyJsonPatch(const json::value& document, const json::value& patch) {
  if (!patch.is_array()) return Status::Invalid("a JSON Patch must be a JSON array of operations");
  json::value doc = document;
  const json::array& ops = patch.get_array();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!ops[i].is_object()) {
      return Status::Invalid("JSON Patch operation " + std::to_string(i) + " is not an object");
    }
    Status st = ApplyOne(doc, ops[i].get_object());
    if (!st.ok()) {
      return st.Annotate("JSON Patch operation " + std::to_string(i) + " (" +
                         std::string(GetString(ops[i].get_object(), "op")) + "): ");
    }
  }
  return doc;
}

}  // namespace taproot::fhir
