#include "common/json.h"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <deque>

namespace taproot {
namespace {

// A parse pass that only looks at object keys, to refuse duplicates: Boost.JSON keeps the last
// of two equal keys silently, and a FHIR resource must not carry two values for one element.
class DuplicateKeyFinder {
 public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  // `text` is the whole input: keys that point into it can be kept as views.
  explicit DuplicateKeyFinder(std::string_view text) : text_(text) {}

  std::string duplicate;  // the first duplicated key found

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code&) { return true; }
  bool on_array_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    // Vectors are reused across objects at the same depth: no allocation per object.
    if (depth_ == objects_.size()) objects_.emplace_back();
    objects_[depth_++].clear();
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) {
    --depth_;
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code& ec) {
    std::string_view key(s.data(), s.size());
    bool in_text = s.data() >= text_.data() && s.data() + s.size() <= text_.data() + text_.size();
    if (!key_.empty() || !in_text) {
      // An escaped or split key lives in the parser's scratch buffer, which is reused: copy it.
      key_.append(s.data(), s.size());
      owned_.push_back(std::move(key_));
      key_.clear();
      key = owned_.back();
    }
    std::vector<std::string_view>& keys = objects_[depth_ - 1];
    for (std::string_view k : keys) {
      if (k == key) {
        duplicate = std::string(key);
        ec = json::error::syntax;
        return false;
      }
    }
    keys.push_back(key);
    return true;
  }
  bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(int64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_uint64(uint64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_double(double, json::string_view, boost::system::error_code&) { return true; }
  bool on_bool(bool, boost::system::error_code&) { return true; }
  bool on_null(boost::system::error_code&) { return true; }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

 private:
  std::string_view text_;
  std::vector<std::vector<std::string_view>> objects_;
  size_t depth_ = 0;
  std::string key_;
  std::deque<std::string> owned_;  // stable addresses for keys that had escapes
};

}  // namespace

Result<json::value> ParseJson(std::string_view text, json::storage_ptr storage) {
  json::parse_options opts;
  opts.allow_invalid_utf8 = false;
  // Deep enough for nested Questionnaire items, shallow enough to bound recursion.
  opts.max_depth = 64;
  json::stream_parser p({}, opts);
  p.reset(std::move(storage));
  boost::system::error_code ec;
  size_t n = p.write_some(text.data(), text.size(), ec);
  if (!ec) p.finish(ec);
  if (ec) {
    // Locate the failure: count lines up to the consumed byte count.
    size_t consumed = n;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < consumed && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return Status::Make(StatusCode::kInvalid,
                        "The body is not valid JSON: " + ec.message() + " at line " +
                            std::to_string(line) + ", column " + std::to_string(col),
                        {}, "structure");
  }
  json::value v = p.release();
  json::basic_parser<DuplicateKeyFinder> keys(opts, text);
  keys.write_some(false, text.data(), text.size(), ec);
  if (!keys.handler().duplicate.empty()) {
    return Status::Make(StatusCode::kInvalid,
                        "The body repeats the JSON property '" +
                            keys.handler().duplicate.substr(0, 64) +
                            "' within one object; each property may appear once",
                        {}, "structure");
  }
  return v;
}

std::string SerializeJson(const json::value& v) { return json::serialize(v); }

std::string PrettyJsonText(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 5 / 4);
  int depth = 0;
  bool in_string = false;
  auto newline = [&] {
    out.push_back('\n');
    out.append(static_cast<size_t>(depth) * 2, ' ');
  };
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < s.size()) {
        out.push_back(s[++i]);
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        out.push_back(c);
        break;
      case '{':
      case '[':
        // Keep empty containers on one line.
        if (i + 1 < s.size() && (s[i + 1] == '}' || s[i + 1] == ']')) {
          out.push_back(c);
          out.push_back(s[++i]);
          break;
        }
        out.push_back(c);
        ++depth;
        newline();
        break;
      case '}':
      case ']':
        --depth;
        newline();
        out.push_back(c);
        break;
      case ',':
        out.push_back(c);
        newline();
        break;
      case ':':
        out.append(": ");
        break;
      case ' ':
      case '\n':
      case '\r':
      case '\t':
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string PrettyJson(const json::value& v) { return PrettyJsonText(json::serialize(v)); }

std::string_view GetString(const json::object& obj, std::string_view key) {
  const json::value* v = FindKey(obj, key);
  if (!v || !v->is_string()) return {};
  const json::string& s = v->get_string();
  return std::string_view(s.data(), s.size());
}

}  // namespace taproot
