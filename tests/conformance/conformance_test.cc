// Runs tests/conformance/*.fhirtest against a real server (see tests/conformance/README.md).
// Each file is one GoogleTest case with a fresh store.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <sstream>

#include "common/json.h"
#include "http/client.h"
#include "http/test_server.h"
#include "store/test_stores.h"
#include "test_util.h"

namespace taproot {
namespace {

namespace fs = std::filesystem;

struct Step {
  std::string name;
  int line = 0;
  std::string method, target;
  http::Headers headers;
  std::string body;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> header_equals, header_prefix;
  std::vector<std::string> body_subsets;
  std::optional<size_t> count;
  std::vector<std::pair<std::string, std::string>> captures;  // name, path
};

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  size_t b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<Step> ParseFile(const std::string& text) {
  std::vector<Step> steps;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  enum { kNone, kHeaders, kBody, kExpect } state = kNone;
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind("### ", 0) == 0) {
      steps.push_back({});
      steps.back().name = line.substr(4);
      steps.back().line = n;
      state = kNone;
      continue;
    }
    if (steps.empty()) continue;
    Step& s = steps.back();
    if (line.rfind("expect", 0) == 0 || line.rfind("capture ", 0) == 0) state = kExpect;
    if (state == kNone) {
      if (Trim(line).empty() || line[0] == '#') continue;
      std::istringstream rl(line);
      rl >> s.method >> s.target;
      state = kHeaders;
    } else if (state == kHeaders) {
      if (Trim(line).empty()) {
        state = kBody;
      } else {
        size_t colon = line.find(':');
        s.headers.emplace_back(Trim(line.substr(0, colon)), Trim(line.substr(colon + 1)));
      }
    } else if (state == kBody) {
      s.body += line + "\n";
    } else {
      std::string rest;
      auto kv = [&](const std::string& prefix) {
        rest = line.substr(prefix.size());
        size_t colon = rest.find(':');
        return std::make_pair(Trim(rest.substr(0, colon)), Trim(rest.substr(colon + 1)));
      };
      if (line.rfind("expect-header-prefix ", 0) == 0) {
        s.header_prefix.push_back(kv("expect-header-prefix "));
      } else if (line.rfind("expect-header ", 0) == 0) {
        s.header_equals.push_back(kv("expect-header "));
      } else if (line.rfind("expect-body ", 0) == 0) {
        s.body_subsets.push_back(line.substr(12));
      } else if (line.rfind("expect-count ", 0) == 0) {
        s.count = std::stoul(line.substr(13));
      } else if (line.rfind("expect ", 0) == 0) {
        s.status = std::stoi(line.substr(7));
      } else if (line.rfind("capture ", 0) == 0) {
        std::string spec = line.substr(8);
        size_t eq = spec.find('=');
        s.captures.emplace_back(Trim(spec.substr(0, eq)), Trim(spec.substr(eq + 1)));
      }
    }
  }
  return steps;
}

std::string Substitute(std::string s, const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) {
    std::string key = "{{" + k + "}}";
    for (size_t pos; (pos = s.find(key)) != std::string::npos;) s.replace(pos, key.size(), v);
  }
  return s;
}

// True if `expected` is contained in `actual`; `where` names the first difference.
bool Subset(const json::value& expected, const json::value& actual, std::string path,
            std::string* where) {
  if (expected.is_object()) {
    if (!actual.is_object()) {
      *where = path + " is not an object";
      return false;
    }
    for (const auto& kv : expected.get_object()) {
      auto* a = actual.get_object().if_contains(kv.key());
      if (!a) {
        *where = path + "." + std::string(kv.key()) + " is missing";
        return false;
      }
      if (!Subset(kv.value(), *a, path + "." + std::string(kv.key()), where)) return false;
    }
    return true;
  }
  if (expected.is_array()) {
    if (!actual.is_array() || actual.get_array().size() < expected.get_array().size()) {
      *where = path + " is not an array of at least " +
               std::to_string(expected.get_array().size()) + " items";
      return false;
    }
    for (size_t i = 0; i < expected.get_array().size(); ++i) {
      if (!Subset(expected.get_array()[i], actual.get_array()[i],
                  path + "[" + std::to_string(i) + "]", where))
        return false;
    }
    return true;
  }
  if (expected != actual) {
    *where = path + " is " + json::serialize(actual) + ", expected " + json::serialize(expected);
    return false;
  }
  return true;
}

std::optional<std::string> Extract(const json::value& v, const std::string& path) {
  const json::value* cur = &v;
  std::istringstream in(path);
  std::string part;
  while (std::getline(in, part, '.')) {
    if (cur->is_array() && !part.empty() && std::isdigit(static_cast<unsigned char>(part[0]))) {
      size_t i = std::stoul(part);
      if (i >= cur->get_array().size()) return std::nullopt;
      cur = &cur->get_array()[i];
    } else if (cur->is_object() && cur->get_object().contains(part)) {
      cur = &cur->get_object().at(part);
    } else {
      return std::nullopt;
    }
  }
  if (cur->is_string()) return std::string(cur->get_string());
  return json::serialize(*cur);
}

// Each file runs against a server on each backend.
class ConformanceTest : public ::testing::TestWithParam<std::tuple<std::string, testing::Backend>> {
};

TEST_P(ConformanceTest, File) {
  fs::path file = std::get<0>(GetParam());
  std::vector<Step> steps = ParseFile(testing::ReadFileText(file));
  ASSERT_FALSE(steps.empty()) << "no steps in " << file;
  testing::TestStore place(std::get<1>(GetParam()));
  std::vector<std::string> args;
  if (place.backend() == testing::Backend::kPostgres) {
    ASSERT_FALSE(place.url().empty()) << "no PostgreSQL test database";
    args = place.ServeArgs();
  }
  testing::TestServer server({}, args);
  ASSERT_TRUE(server.Start()) << server.log();
  http::Client client(server.base());
  std::map<std::string, std::string> vars;
  for (const Step& step : steps) {
    SCOPED_TRACE(file.filename().string() + ":" + std::to_string(step.line) + " " + step.name);
    http::Headers headers;
    for (const auto& [k, v] : step.headers) headers.emplace_back(k, Substitute(v, vars));
    std::string body = Trim(Substitute(step.body, vars));
    auto res = client.Send(step.method, Substitute(step.target, vars), body, headers);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(res->status, step.status) << res->body.substr(0, 1000);
    for (const auto& [k, v] : step.header_equals)
      EXPECT_EQ(res->Header(k), Substitute(v, vars)) << k;
    for (const auto& [k, v] : step.header_prefix) {
      EXPECT_EQ(res->Header(k).rfind(Substitute(v, vars), 0), 0u) << k << ": " << res->Header(k);
    }
    json::value actual;
    if (!res->body.empty()) {
      auto parsed = ParseJson(res->body);
      ASSERT_TRUE(parsed.ok()) << res->body.substr(0, 300);
      actual = std::move(parsed).value();
    }
    for (const std::string& subset : step.body_subsets) {
      auto expected = ParseJson(Substitute(subset, vars));
      ASSERT_TRUE(expected.ok()) << "bad expect-body JSON: " << subset;
      std::string where;
      EXPECT_TRUE(Subset(*expected, actual, "$", &where)) << where << "\n"
                                                          << res->body.substr(0, 1000);
    }
    if (step.count) {
      auto* entries = actual.is_object() ? actual.get_object().if_contains("entry") : nullptr;
      EXPECT_EQ(entries && entries->is_array() ? entries->get_array().size() : 0u, *step.count);
    }
    for (const auto& [name, path] : step.captures) {
      auto value = Extract(actual, path);
      ASSERT_TRUE(value.has_value()) << "capture " << name << ": no " << path;
      vars[name] = *value;
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
}

std::vector<std::string> Files() {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(fs::path(TAPROOT_SOURCE_DIR) / "tests/conformance")) {
    if (e.path().extension() == ".fhirtest") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Files, ConformanceTest,
    ::testing::Combine(::testing::ValuesIn(Files()),
                       ::testing::Values(testing::Backend::kSqlite, testing::Backend::kPostgres)),
    [](const ::testing::TestParamInfo<std::tuple<std::string, testing::Backend>>& info) {
      return fs::path(std::get<0>(info.param)).stem().string() +
             (std::get<1>(info.param) == testing::Backend::kSqlite ? "_Sqlite" : "_Postgres");
    });

}  // namespace
}  // namespace taproot
