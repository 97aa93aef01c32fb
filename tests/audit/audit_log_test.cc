// The audit chain: appends are durable and chained; deleting, editing or reordering a record,
// or cutting records off the end, is found by Verify and named.
#include "audit/audit_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <thread>

#include "common/ids.h"
#include "common/json.h"
#include "fhir/model.h"
#include "fhir/validator.h"

namespace taproot::audit {
namespace {

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / ("taproot-audit-" + NewUuid())).string();
    auto log = AuditLog::Open(dir_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (int i = 0; i < 10; ++i) {
      AuditEntry e;
      e.time_us = 1'000'000 * (i + 1);
      e.user = "u" + std::to_string(i % 2);
      e.patients = {"p" + std::to_string(i)};
      e.subtype = "read";
      e.action = "R";
      e.outcome = "0";
      e.request = "GET Observation/n" + std::to_string(i);
      ASSERT_EQ(*(*log)->Append(e), i + 1);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/audit.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  std::string dir_;
};

TEST_F(AuditLogTest, OneProcessPerLog) {
  auto first = AuditLog::Open(dir_);
  ASSERT_TRUE(first.ok());
  // flock locks belong to the open file description: a second open in this process conflicts
  // just as a second process would.
  auto second = AuditLog::Open(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("own --data"), std::string::npos);
  first->reset();
  EXPECT_TRUE(AuditLog::Open(dir_).ok());
}

TEST_F(AuditLogTest, IntactChainVerifies) {
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, 10);
}

TEST_F(AuditLogTest, DeletedRecordIsNamed) {
  Sql("DELETE FROM audit WHERE seq = 4");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 4);
  EXPECT_NE(r->problem.find("missing"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, EditedRecordIsNamed) {
  Sql("UPDATE audit SET body = replace(body, 'Observation/n6', 'Observation/n66') WHERE seq = 7");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 7);
  EXPECT_NE(r->problem.find("altered"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, EditWithRecomputedHashBreaksTheNextLink) {
  // A careful forger recomputes record 5's own hash; record 6 still points at the old one.
  auto forged = ChainHash(std::string(64, '0'), 1, "x");  // any value unlike the real one
  Sql("UPDATE audit SET body = 'forged', hash = '" + forged + "' WHERE seq = 5");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 5);
}

TEST_F(AuditLogTest, ReorderedRecordsAreNamed) {
  // Swap the contents of records 2 and 3 (rows keep their seq; bodies and hashes move).
  Sql("UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
      "UPDATE audit SET seq = 3 WHERE seq = -2;");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 2);
}

TEST_F(AuditLogTest, TruncatedTailIsCaughtByTheAnchor) {
  Sql("DELETE FROM audit WHERE seq >= 9");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 9);
  EXPECT_NE(r->problem.find("cut off"), std::string::npos) << r->problem;
}

TEST(AuditEntryTest, EncodesDecodesAndRendersAsAnAuditEvent) {
  AuditEntry e;
  e.time_us = 1'700'000'000'000'000;
  e.user = "Practitioner/1";
  e.issuer = "urn:taproot:local";
  e.subject = "Practitioner/1";
  e.role = "S8000:G8000:R8000";
  e.organization = "A81001";
  e.peer = "127.0.0.1";
  e.purpose = "ETREAT";
  e.subtype = "read";
  e.action = "R";
  e.outcome = "0";
  e.outcome_desc = "200";
  e.request = "GET Observation/\"quoted\"\n";
  e.patients = {"p1", "p2"};
  e.break_glass = "emergency: collapsed";
  e.alert = true;
  auto back = DecodeEntry(EncodeEntry(e));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeEntry(*back), EncodeEntry(e));
  EXPECT_EQ(back->request, e.request);
  EXPECT_EQ(back->patients, e.patients);
  auto ev = ParseJson(AuditEventJson(e, 42));
  ASSERT_TRUE(ev.ok());
  const auto& o = ev->as_object();
  EXPECT_EQ(o.at("resourceType").as_string(), "AuditEvent");
  EXPECT_EQ(o.at("id").as_string(), "42");
  EXPECT_EQ(o.at("recorded").as_string(), "2023-11-14T22:13:20.000000Z");
  EXPECT_EQ(o.at("subtype").at(0).at("code").as_string(), "read");
  EXPECT_EQ(o.at("purposeOfEvent").at(0).at("coding").at(0).at("code").as_string(), "ETREAT");
  EXPECT_EQ(o.at("agent").at(1).at("who").at("identifier").at("value").as_string(), "A81001");
  EXPECT_EQ(o.at("entity").at(1).at("what").at("reference").as_string(), "Patient/p2");
  // And it is a valid R4 AuditEvent.
  Status valid = fhir::ValidateResource(fhir::R4(), *ev);
  EXPECT_TRUE(valid.ok()) << valid.ToString();
}

TEST_F(AuditLogTest, ConcurrentAppendsKeepOneChainAndSearchFinds) {
  auto log = AuditLog::Open(dir_);
  ASSERT_TRUE(log.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        AuditEntry e;
        e.time_us = 50'000'000;
        e.user = "t" + std::to_string(t);
        e.patients = {"px"};
        e.subtype = "search";
        e.action = "R";
        e.outcome = "0";
        e.alert = i == 0;
        ASSERT_TRUE((*log)->Append(e).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, 210);
  AuditQuery q;
  q.patient = "px";
  q.count = 1000;
  EXPECT_EQ((*log)->Search(q)->records.size(), 200u);
  q = {};
  q.user = "u1";
  EXPECT_EQ((*log)->Search(q)->records.size(), 5u);
  q = {};
  q.open_alerts_only = true;
  auto alerts = (*log)->Search(q);
  ASSERT_EQ(alerts->records.size(), 8u);
  EXPECT_NE(alerts->records[0].json.find("\"id\":\"" + std::to_string(alerts->records[0].seq)),
            std::string::npos);
  // Acknowledging one leaves seven open.
  AuditEntry ack;
  ack.subtype = "acknowledge";
  ack.action = "E";
  ack.outcome = "0";
  ack.acknowledges = alerts->records[0].seq;
  ASSERT_TRUE((*log)->Append(ack).ok());
  EXPECT_EQ((*log)->Search(q)->records.size(), 7u);
  // Paging: newest first, 50 a page.
  q = {};
  q.count = 50;
  auto page = (*log)->Search(q);
  ASSERT_TRUE(page->next_before_seq);
  EXPECT_EQ(page->records.front().seq, 211);
}

}  // namespace
}  // namespace taproot::audit
