// The audit entry's stored form and its FHIR rendering (see audit_log.h).
#include <boost/json.hpp>

#include "audit/audit_log.h"
#include "common/clock.h"
#include "common/json.h"

namespace taproot::audit {
namespace {

// JSON string escaping for the compact form, without building a DOM (this runs per request).
void Quote(std::string& out, std::string_view s) {
  out += '"';
  size_t run = 0;  // start of the characters not yet copied
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c != '"' && c != '\\' && c >= 0x20) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    if (c < 0x20) {
      static const char* kHex = "0123456789abcdef";
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += '\\';
      out += static_cast<char>(c);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void Field(std::string& out, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  out += ',';
  Quote(out, key);
  out += ':';
  Quote(out, value);
}

json::object Coding(std::string_view system, std::string_view code) {
  return json::object{{"system", system}, {"code", code}};
}

}  // namespace

std::string EncodeEntry(const AuditEntry& e) {
  std::string out;
  out.reserve(256);
  out += "{\"t\":" + std::to_string(e.time_us);
  Field(out, "u", e.user);
  Field(out, "iss", e.issuer);
  Field(out, "sub", e.subject);
  Field(out, "role", e.role);
  Field(out, "org", e.organization);
  Field(out, "cl", e.client_id);
  Field(out, "ip", e.peer);
  Field(out, "pu", e.purpose);
  Field(out, "st", e.subtype);
  Field(out, "a", e.action);
  Field(out, "o", e.outcome);
  Field(out, "od", e.outcome_desc);
  Field(out, "rq", e.request);
  Field(out, "id", e.request_id);
  Field(out, "bg", e.break_glass);
  Field(out, "sc", e.self_claim);
  if (!e.patients.empty()) {
    out += ",\"p\":[";
    for (size_t i = 0; i < e.patients.size(); ++i) {
      if (i) out += ',';
      Quote(out, e.patients[i]);
    }
    out += ']';
  }
  if (e.alert) out += ",\"al\":true";
  if (e.acknowledges) out += ",\"ack\":" + std::to_string(e.acknowledges);
  out += '}';
  return out;
}

Result<AuditEntry> DecodeEntry(std::string_view text) {
  ASSIGN_OR_RETURN(json::value doc, ParseJson(text));
  if (!doc.is_object()) return Status::Invalid("an audit entry must be a JSON object");
  const json::object& o = doc.get_object();
  auto str = [&](std::string_view k) { return std::string(GetString(o, k)); };
  AuditEntry e;
  if (const json::value* t = FindKey(o, "t"); t && t->is_int64()) e.time_us = t->get_int64();
  e.user = str("u");
  e.issuer = str("iss");
  e.subject = str("sub");
  e.role = str("role");
  e.organization = str("org");
  e.client_id = str("cl");
  e.peer = str("ip");
  e.purpose = str("pu");
  e.subtype = str("st");
  e.action = str("a");
  e.outcome = str("o");
  e.outcome_desc = str("od");
  e.request = str("rq");
  e.request_id = str("id");
  e.break_glass = str("bg");
  e.self_claim = str("sc");
  if (const json::value* p = FindKey(o, "p"); p && p->is_array()) {
    for (const json::value& x : p->get_array())
      if (x.is_string()) e.patients.emplace_back(x.get_string());
  }
  if (const json::value* al = FindKey(o, "al"); al && al->is_bool()) e.alert = al->get_bool();
  if (const json::value* ack = FindKey(o, "ack"); ack && ack->is_int64()) {
    e.acknowledges = ack->get_int64();
  }
  return e;
}

std::string AuditEventJson(const AuditEntry& e, int64_t seq) {
  json::object ev;
  ev["resourceType"] = "AuditEvent";
  ev["id"] = std::to_string(seq);
  ev["type"] = json::object{{"system", "http://terminology.hl7.org/CodeSystem/audit-event-type"},
                            {"code", "rest"},
                            {"display", "RESTful Operation"}};
  ev["subtype"] =
      json::array{Coding(e.subtype == "acknowledge" ? "urn:taproot:audit-subtype"
                                                    : "http://hl7.org/fhir/restful-interaction",
                         e.subtype)};
  ev["action"] = e.action;
  ev["recorded"] = FormatInstant(e.time_us);
  ev["outcome"] = e.outcome;
  if (!e.outcome_desc.empty()) ev["outcomeDesc"] = e.outcome_desc;
  ev["purposeOfEvent"] = json::array{json::object{
      {"coding",
       json::array{Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", e.purpose)}}}};
  json::object who{{"display", e.user}};
  if (!e.subject.empty()) {
    who["identifier"] = json::object{
        {"system", e.issuer.empty() ? "urn:taproot:anonymous" : e.issuer}, {"value", e.subject}};
  }
  json::object agent{{"who", who}, {"requestor", true}};
  if (!e.role.empty()) {
    agent["role"] = json::array{json::object{
        {"coding", json::array{Coding("https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode",
                                      e.role)}}}};
  }
  if (!e.peer.empty()) agent["network"] = json::object{{"address", e.peer}, {"type", "2"}};
  json::array agents{agent};
  if (!e.organization.empty()) {
    agents.push_back(json::object{
        {"who",
         json::object{
             {"identifier", json::object{{"system", "https://fhir.nhs.uk/Id/ods-organization-code"},
                                         {"value", e.organization}}}}},
        {"requestor", false}});
  }
  if (!e.client_id.empty()) {
    agents.push_back(json::object{{"who", json::object{{"display", "client " + e.client_id}}},
                                  {"requestor", false}});
  }
  ev["agent"] = std::move(agents);
  ev["source"] = json::object{{"observer", json::object{{"display", "Taproot"}}}};
  json::array entities;
  for (const std::string& p : e.patients) {
    entities.push_back(json::object{
        {"what", json::object{{"reference", "Patient/" + p}}},
        {"type", Coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1")},
        {"role", Coding("http://terminology.hl7.org/CodeSystem/object-role", "1")}});
  }
  json::array details;
  auto detail = [&](std::string_view type, std::string_view value) {
    if (!value.empty()) details.push_back(json::object{{"type", type}, {"valueString", value}});
  };
  detail("request", e.request);
  detail("X-Request-ID", e.request_id);
  detail("break-glass", e.break_glass);
  detail("self-claimed-relationship", e.self_claim);
  if (e.acknowledges) detail("acknowledges", "AuditEvent/" + std::to_string(e.acknowledges));
  entities.push_back(
      json::object{{"type", Coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2")},
                   {"detail", std::move(details)}});
  ev["entity"] = std::move(entities);
  return SerializeJson(ev);
}

}  // namespace taproot::audit
