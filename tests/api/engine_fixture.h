// A store and engine, with helpers to send requests. Shared by the api tests, which run on
// both backends (SQLite in a temporary directory, PostgreSQL in a new database of the test
// cluster): each fixture derived from EngineTest is instantiated for both with
// TAPROOT_BOTH_BACKENDS.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "api/engine.h"
#include "common/ids.h"
#include "common/json.h"
#include "fhir/model.h"
#include "search/query.h"
#include "store/store.h"
#include "store/test_stores.h"

namespace taproot::api {

// A request as the HTTP layer hands it to the engine: target is path and query, below the base.
inline FhirRequest MakeRequest(const std::string& method, const std::string& target,
                               const std::string& body = {},
                               std::vector<std::pair<std::string, std::string>> headers = {}) {
  FhirRequest req;
  req.method = method;
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) {
    req.raw_query = target.substr(q + 1);
    req.query = *search::ParseQueryString(req.raw_query);
  }
  req.body = body;
  bool has_ct = false;
  for (auto& [k, v] : headers) has_ct |= k == "content-type";
  if (!body.empty() && !has_ct) headers.emplace_back("content-type", "application/fhir+json");
  req.headers = std::move(headers);
  return req;
}

class EngineTest : public ::testing::TestWithParam<taproot::testing::Backend> {
 protected:
  void SetUp() override {
    place_ = std::make_unique<taproot::testing::TestStore>(GetParam());
    auto opened = place_->Open();
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
    engine_ = std::make_unique<Engine>(*store_, fhir::R4());
  }
  void TearDown() override {
    engine_.reset();
    store_.reset();
    place_.reset();
  }

  FhirResponse Do(const std::string& method, const std::string& target,
                  const std::string& body = {},
                  std::vector<std::pair<std::string, std::string>> headers = {},
                  const std::string& request_id = {}) {
    FhirRequest req = MakeRequest(method, target, body, std::move(headers));
    RequestContext ctx;
    ctx.base_url = "http://test/fhir";
    ctx.request_id = request_id.empty() ? NewUuid() : request_id;
    ctx.client_request_id = !request_id.empty();
    return engine_->Handle(ctx, req);
  }

  static json::value Body(const FhirResponse& r) {
    auto v = ParseJson(r.body);
    return v.ok() ? std::move(v).value() : json::value();
  }
  static std::string Header(const FhirResponse& r, const std::string& name) {
    const std::string* v = r.FindHeader(name);
    return v ? *v : std::string();
  }
  static std::string Diagnostics(const FhirResponse& r) {
    json::value v = Body(r);
    if (!v.is_object() || !v.as_object().contains("issue")) return r.body;
    return std::string(v.at("issue").at(0).at("diagnostics").as_string());
  }
  int64_t Total(const std::string& query) {
    FhirResponse r = Do("GET", query);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).at("total").as_int64();
  }

  std::unique_ptr<taproot::testing::TestStore> place_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Engine> engine_;
};

#define TAPROOT_BOTH_BACKENDS(Fixture)                                                             \
  INSTANTIATE_TEST_SUITE_P(                                                                        \
      Backends, Fixture,                                                                           \
      ::testing::Values(taproot::testing::Backend::kSqlite, taproot::testing::Backend::kPostgres), \
      taproot::testing::BackendName)

}  // namespace taproot::api
