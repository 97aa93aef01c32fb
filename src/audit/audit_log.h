// The audit trail: an append-only, hash-chained log of AuditEvents in a file of its own
// (DIR/audit.log), separate from the clinical store so that it is kept the same way whichever
// store backend serves the data, and so an auditor's reads never contend with clinical writes.
//
// Format: one record per line, "<seq> <hash> <body>", where body is the entry's compact JSON
// (EncodeEntry; it never holds a raw newline) and hash_n = SHA-256(hash_{n-1} || n || body_n),
// hex, with hash_0 all zeros. Editing, deleting or reordering any line breaks the chain there,
// which Verify() names. Cutting records off the end is caught against the anchor file
// (DIR/audit.head: the newest seq and hash, rewritten at most every 200 ms and at close), or
// against a head published elsewhere (`taproot audit head`).
//
// Durability: a record is reported durable once its line is on stable storage. One writer
// thread appends every record queued meanwhile with one synchronous write (group commit), so the
// cost of a sync is shared by all the requests waiting on it. The write is direct (O_DIRECT |
// O_DSYNC, rewriting the partial block the log ends in), which costs the CPU about half what a
// buffered O_DSYNC write does; where the filesystem has no direct I/O it is a buffered O_DSYNC
// write.
// AppendAsync lets a caller wait without holding a thread (the HTTP server sends the response
// from the callback); Append blocks. Callbacks run on the writer thread and must be short.
//
// Search: DIR/audit.db (SQLite) indexes the log's records by user, patient, date and so on. It is
// derived data: an indexer thread fills it in large transactions after the records are durable,
// a search first indexes whatever is still queued, and a start re-reads from the log whatever the
// index lacks (after a crash, or with audit.db deleted). A log kept in audit.db's `audit` table by
// an earlier Taproot is moved into audit.log, hashes untouched, when the log is first opened.
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace taproot::audit {

// One audited event, as facts. The log stores them compactly (EncodeEntry) and renders the FHIR
// AuditEvent only when an auditor reads it (AuditEventJson), so a request pays for a few hundred
// bytes, not for building and writing a resource.
struct AuditEntry {
  int64_t time_us = 0;
  std::string user;             // who, as displayed: "Practitioner/123" or the token subject
  std::string issuer, subject;  // the token's iss and sub (empty: unauthenticated)
  std::string role, organization, client_id, peer;
  std::string purpose = "TREAT";  // v3 ActReason
  std::string subtype;            // RESTful interaction: "read", "search", "acknowledge" ...
  std::string action;             // C R U D E
  std::string outcome;            // "0" success, "4" denied or failed, "8" server error
  std::string outcome_desc;       // HTTP status and the reason of a refusal
  std::string request;            // "GET Observation/1" (never the query string)
  std::string request_id;
  std::vector<std::string> patients;  // patient ids the event touched
  std::string break_glass;            // its reason, when break-glass was used
  std::string self_claim;             // its reason, when a relationship was self-claimed
  bool alert = false;                 // needs a privacy officer's acknowledgement
  int64_t acknowledges = 0;           // the alert (seq) this record acknowledges
};

// The stored text of an entry (what the chain hashes): a compact JSON object with short keys.
std::string EncodeEntry(const AuditEntry& e);
Result<AuditEntry> DecodeEntry(std::string_view text);
// The entry as an R4 AuditEvent with id `seq`.
std::string AuditEventJson(const AuditEntry& e, int64_t seq);

struct StoredAudit {
  int64_t seq = 0;
  std::string json;  // the AuditEvent with its id
  bool alert = false;
  bool acknowledged = false;
};

struct AuditQuery {
  std::optional<int64_t> id;
  std::string user, patient, subtype, action, outcome;
  std::optional<int64_t> from_us, to_us;  // [from, to)
  bool open_alerts_only = false;
  std::optional<int64_t> before_seq;  // paging: newest first
  int64_t count = 50;
};

struct AuditPage {
  std::vector<StoredAudit> records;
  std::optional<int64_t> next_before_seq;
};

struct VerifyReport {
  bool ok = true;
  int64_t records = 0;
  int64_t first_broken = 0;  // the seq where the chain first fails, 0 if none
  std::string problem;
};

class AuditLog {
 public:
  // `sync`: commit with a full fsync (off only for benchmarks that say so).
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& dir, bool sync = true);
  ~AuditLog();

  // Called once the record is durable (status OK and its seq) or could not be written.
  using Done = std::function<void(const Status&, int64_t seq)>;
  void AppendAsync(AuditEntry entry, Done done);
  // Blocks until the record is durable; returns its seq.
  Result<int64_t> Append(AuditEntry entry);
  Result<AuditPage> Search(const AuditQuery& query);

  // Checks the chain of DIR/audit.log from the first record, and the anchor.
  static Result<VerifyReport> Verify(const std::string& dir);
  // The newest seq and hash, to publish somewhere the log's host cannot rewrite.
  static Result<std::pair<int64_t, std::string>> Head(const std::string& dir);

 private:
  class Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// hex(SHA-256(prev_hex || seq || text)): the chain step, shared by writer and verifier.
std::string ChainHash(const std::string& prev_hex, int64_t seq, std::string_view text);

}  // namespace taproot::audit
