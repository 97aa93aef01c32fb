// The audit chain: appends are durable and chained; deleting, editing or reordering a record,
// or cutting records off the end, is found by Verify and named. The search index is rebuilt from
// the log, and a log kept in audit.db by an earlier version moves into audit.log intact.
#include "audit/audit_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <set>
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

  // The log's records (its newline-ended lines: the zeros the log is grown by follow the last),
  // and writing them back (a tamperer with access to the file).
  std::vector<std::string> Lines() {
    std::ifstream in(dir_ + "/audit.log", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> lines;
    for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
      lines.push_back(text.substr(at, nl - at));
    }
    return lines;
  }
  void Rewrite(const std::vector<std::string>& lines, std::string tail = "") {
    std::ofstream out(dir_ + "/audit.log", std::ios::trunc);
    for (const auto& l : lines) out << l << "\n";
    out << tail;
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
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 10u);
  lines.erase(lines.begin() + 3);
  Rewrite(lines);
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 4);
  EXPECT_NE(r->problem.find("missing"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, EditedRecordIsNamed) {
  auto lines = Lines();
  size_t at = lines[6].find("Observation/n6");
  ASSERT_NE(at, std::string::npos);
  lines[6].replace(at, 14, "Observation/n66");
  Rewrite(lines);
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 7);
  EXPECT_NE(r->problem.find("altered"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, EditWithRecomputedHashBreaksTheNextLink) {
  // A careful forger recomputes record 5's own hash from record 4's; record 6's hash was
  // computed from the old one, so the chain breaks there, and both are named.
  auto lines = Lines();
  std::string hash4 = lines[3].substr(2, 64);
  lines[4] = "5 " + ChainHash(hash4, 5, "{\"t\":1}") + " {\"t\":1}";
  Rewrite(lines);
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 6);
  EXPECT_NE(r->problem.find("record 5 was altered and its hash recomputed"), std::string::npos)
      << r->problem;
}

TEST_F(AuditLogTest, ReorderedRecordsAreNamed) {
  auto lines = Lines();
  std::swap(lines[1], lines[2]);
  Rewrite(lines);
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 2);
  // Renumbering the moved records to hide the swap breaks their hashes instead.
  lines[1].replace(0, 1, "2");
  lines[2].replace(0, 1, "3");
  Rewrite(lines);
  r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 2);
  EXPECT_NE(r->problem.find("altered"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, TruncatedTailIsCaughtByTheAnchor) {
  auto lines = Lines();
  lines.resize(8);
  Rewrite(lines);
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->first_broken, 9);
  EXPECT_NE(r->problem.find("cut off"), std::string::npos) << r->problem;
}

TEST_F(AuditLogTest, UnfinishedRecordIsNotPartOfTheLog) {
  // A crash in the middle of a write leaves a line without its newline. It was never synced,
  // so never acknowledged: Verify ignores it and the next open drops it.
  Rewrite(Lines(), "11 0123");
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, 10);
  {
    auto log = AuditLog::Open(dir_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    AuditEntry e;
    e.subtype = "read";
    EXPECT_EQ(*(*log)->Append(e), 11);
  }
  r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, 11);
  auto head = AuditLog::Head(dir_);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->first, 11);
  EXPECT_EQ(head->second, Lines().back().substr(3, 64));
}

TEST_F(AuditLogTest, SearchIndexIsRebuiltFromTheLog) {
  for (const char* f : {"/audit.db", "/audit.db-wal", "/audit.db-shm"}) {
    std::filesystem::remove(dir_ + f);
  }
  auto log = AuditLog::Open(dir_);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  AuditQuery q;
  q.user = "u1";
  auto page = (*log)->Search(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->records.size(), 5u);
  EXPECT_EQ(page->records[0].seq, 10);
  EXPECT_NE(page->records[0].json.find("GET Observation/n9"), std::string::npos);
  q = {};
  q.patient = "p4";
  page = (*log)->Search(q);
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].seq, 5);
  q = {};
  q.from_us = 3'000'000;
  q.to_us = 5'000'000;
  EXPECT_EQ((*log)->Search(q)->records.size(), 2u);
}

TEST_F(AuditLogTest, RecordsOfEverySizeSurviveReopeningsWhole) {
  // Commits rewrite the block the log ends in (direct writes go by whole blocks), so records
  // that end exactly at, straddle, or span several blocks, written over several openings of the
  // log, must all read back as written and keep one chain.
  std::vector<std::string> requests;
  int64_t seq = 10;
  for (int opening = 0; opening < 3; ++opening) {
    auto log = AuditLog::Open(dir_);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    for (size_t size : {1u, 700u, 4000u, 4096u, 9000u, 13u, 8192u, 250u}) {
      AuditEntry e;
      e.subtype = "read";
      e.request = "GET Observation/" + std::string(size, static_cast<char>('a' + opening));
      requests.push_back(e.request);
      ASSERT_EQ(*(*log)->Append(e), ++seq);
    }
  }
  auto r = AuditLog::Verify(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, seq);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(seq));
  for (size_t i = 0; i < requests.size(); ++i) {
    auto entry = DecodeEntry(lines[10 + i].substr(lines[10 + i].find(' ', 66) + 1));
    ASSERT_TRUE(entry.ok()) << lines[10 + i].substr(0, 80);
    EXPECT_EQ(entry->request, requests[i]);
  }
  auto log = AuditLog::Open(dir_);
  ASSERT_TRUE(log.ok());
  AuditQuery q;
  q.id = seq;
  auto page = (*log)->Search(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_NE(page->records[0].json.find(requests.back()), std::string::npos);
}

TEST(AuditLogUpgradeTest, MovesTheRecordTableOfAnEarlierVersionIntoTheLog) {
  std::string dir =
      (std::filesystem::temp_directory_path() / ("taproot-audit-" + NewUuid())).string();
  std::filesystem::create_directories(dir);
  // audit.db as Taproot kept it before the log was a file: one row per record, chained.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/audit.db").c_str(), &db), SQLITE_OK);
  std::string sql =
      "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, user TEXT NOT NULL, "
      "patients TEXT NOT NULL, subtype TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT "
      "NULL, alert INTEGER NOT NULL, acknowledges INTEGER, body TEXT NOT NULL, prev TEXT NOT "
      "NULL, hash TEXT NOT NULL);";
  std::string prev(64, '0');
  for (int seq = 1; seq <= 3; ++seq) {
    AuditEntry e;
    e.time_us = seq;
    e.user = "old";
    e.patients = {"p" + std::to_string(seq)};
    e.subtype = "read";
    std::string body = EncodeEntry(e);
    std::string hash = ChainHash(prev, seq, body);
    sql += "INSERT INTO audit VALUES(" + std::to_string(seq) + ",1,'old',' p ','read','R','0',0," +
           "NULL,'" + body + "','" + prev + "','" + hash + "');";
    prev = hash;
  }
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  {
    auto log = AuditLog::Open(dir);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    AuditEntry e;
    e.user = "new";
    EXPECT_EQ(*(*log)->Append(e), 4);
    AuditQuery q;
    q.patient = "p2";
    auto page = (*log)->Search(q);
    ASSERT_EQ(page->records.size(), 1u);
    EXPECT_EQ(page->records[0].seq, 2);
  }
  auto r = AuditLog::Verify(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->ok) << r->problem;
  EXPECT_EQ(r->records, 4);
  std::filesystem::remove_all(dir);
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
  // Paging through one patient's records: newest first, no record twice, none left out.
  q.count = 30;
  std::set<int64_t> seen;
  int64_t last = INT64_MAX;
  for (;;) {
    auto page = (*log)->Search(q);
    ASSERT_TRUE(page.ok());
    for (const auto& r : page->records) {
      EXPECT_LT(r.seq, last);
      last = r.seq;
      seen.insert(r.seq);
    }
    if (!page->next_before_seq) break;
    q.before_seq = page->next_before_seq;
  }
  EXPECT_EQ(seen.size(), 200u);
  q = {};
  q.patient = "px";
  q.user = "t3";
  EXPECT_EQ((*log)->Search(q)->records.size(), 25u);
  q.patient = "nobody";
  EXPECT_EQ((*log)->Search(q)->records.size(), 0u);
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
