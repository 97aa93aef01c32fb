// Multiplies the Synthea transaction bundles into a larger population with the same shape, for
// the search benchmarks (bench/run-search.sh).
//
//   build/taproot_synthgen --from build/fixtures/bundles --patients 1000 --out DIR
//
// Bundles without a Patient (Synthea's shared practitioner and hospital bundles) are copied once.
// Patient bundles are copied round-robin until --patients bundles exist; copy k of a bundle:
//  * every UUID in it (resource ids, fullUrls, references, identifier values) is replaced by one
//    derived from (UUID, k), so copies share nothing but the shared practitioners and hospitals;
//  * every date, dateTime and instant is moved back by the same number of days (0 for k = 0),
//    which keeps the order of events and ages within a copy;
//  * the patient's given and family names are drawn from the names of the whole corpus with new
//    numbers (Synthea's style: "Robel940"), and the digits of its other identifiers (SSN,
//    licence, passport) are replaced;
//  * each MedicationRequest gets a MedicationDispense a day after it was authored (Synthea writes
//    none), so that _revinclude of dispenses has something to find.
// The output is deterministic: the same input and --patients give the same files.
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/files.h"
#include "common/json.h"

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t Hash(std::string_view s, uint64_t seed) {
  uint64_t h = Mix(seed);
  for (unsigned char c : s) h = Mix(h ^ c);
  return h;
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// True if s[at, at + 36) is a lower-case UUID: 8-4-4-4-12 hex digits.
bool UuidAt(std::string_view s, size_t at) {
  if (at + 36 > s.size()) return false;
  for (size_t i = 0; i < 36; ++i) {
    char c = s[at + i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!IsHex(c)) {
      return false;
    }
  }
  return true;
}

std::string NewUuid(std::string_view old, int copy) {
  uint64_t a = Hash(old, copy * 2 + 1), b = Hash(old, copy * 2 + 2);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>(a >> 16) & 0xffff, static_cast<unsigned>(a) & 0xffff,
                static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b) & 0xffffffffffffull);
  return buf;
}

// Days since 1970-01-01 for a proleptic Gregorian date, and back (H. Hinnant's algorithms).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = static_cast<unsigned>(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = static_cast<unsigned>(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

// A FHIR date or dateTime with at least day precision ("2001-08-13", "2001-08-13T11:30:34+00:00")
// moved by `days`; other strings unchanged.
bool ShiftDate(std::string& s, int64_t days) {
  if (s.size() < 10 || s[4] != '-' || s[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  if (s.size() > 10 && s[10] != 'T') return false;
  int64_t y = std::stoi(s.substr(0, 4));
  unsigned m = std::stoi(s.substr(5, 2)), d = std::stoi(s.substr(8, 2));
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  CivilFromDays(DaysFromCivil(y, m, d) + days, y, m, d);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(y), m, d);
  s.replace(0, 10, buf);
  return true;
}

struct Names {
  std::vector<std::string> given, family;
};

// The UUIDs of a bundle's own resources, each with its copy-k replacement. UUIDs of anything
// else (the shared hospitals, in conditional references) are kept.
using UuidMap = std::unordered_map<std::string, std::string>;

UuidMap OwnUuids(const json::object& bundle, int copy) {
  UuidMap map;
  for (const auto& e : bundle.at("entry").as_array()) {
    std::string_view id = taproot::GetString(e.at("resource").as_object(), "id");
    if (id.size() == 36 && UuidAt(id, 0)) map.emplace(id, NewUuid(id, copy));
  }
  return map;
}

// The copy-k rewrite of one string: own UUIDs replaced, dates moved.
void RewriteString(json::string& js, const UuidMap& uuids, int64_t days) {
  std::string s(js);
  bool changed = false;
  for (size_t i = 0; i + 36 <= s.size(); ++i) {
    if ((i == 0 || !IsHex(s[i - 1])) && UuidAt(s, i) && (i + 36 == s.size() || !IsHex(s[i + 36]))) {
      auto it = uuids.find(s.substr(i, 36));
      if (it == uuids.end()) continue;
      s.replace(i, 36, it->second);
      i += 35;
      changed = true;
    }
  }
  if (days != 0 && ShiftDate(s, days)) changed = true;
  if (changed) js = s;
}

void Rewrite(json::value& v, const UuidMap& uuids, int64_t days, std::string_view key) {
  if (v.is_string()) {
    // Attachments (base64 notes) and narrative are left as they are.
    if (key != "data" && key != "div") RewriteString(v.get_string(), uuids, days);
  } else if (v.is_object()) {
    for (auto& kv : v.get_object()) Rewrite(kv.value(), uuids, days, kv.key());
  } else if (v.is_array()) {
    for (auto& e : v.get_array()) Rewrite(e, uuids, days, key);
  }
}

// Synthea names are a word and a number ("Robel940"): a new name keeps a word of the corpus and
// draws a new number, so the population has about as many surnames as patients (reusing the
// corpus's 59 surnames would give every surname to 1 patient in 59).
std::string Renumbered(const std::string& name, uint64_t h) {
  size_t end = name.size();
  while (end > 0 && name[end - 1] >= '0' && name[end - 1] <= '9') --end;
  return name.substr(0, end) + std::to_string(h % 1000);
}

void RenamePatient(json::object& patient, const Names& names, uint64_t seed) {
  if (auto* ns = patient.if_contains("name"); ns && ns->is_array()) {
    std::string family =
        Renumbered(names.family[Mix(seed) % names.family.size()], Mix(seed + 3));
    for (auto& n : ns->get_array()) {
      if (!n.is_object()) continue;
      json::object& o = n.get_object();
      if (o.contains("family")) o["family"] = family;
      if (auto* g = o.if_contains("given"); g && g->is_array()) {
        uint64_t h = Mix(seed + 1);
        for (auto& e : g->get_array()) {
          e = Renumbered(names.given[h % names.given.size()], Mix(h + 1));
          h = Mix(h);
        }
      }
    }
  }
  if (auto* ids = patient.if_contains("identifier"); ids && ids->is_array()) {
    uint64_t h = Mix(seed + 2);
    for (auto& id : ids->get_array()) {
      if (!id.is_object()) continue;
      auto* value = id.get_object().if_contains("value");
      if (!value || !value->is_string()) continue;
      std::string s(value->get_string());
      if (s.size() == 36 && UuidAt(s, 0)) continue;  // already a fresh UUID
      for (char& c : s) {
        if (c >= '0' && c <= '9') {
          c = static_cast<char>('0' + h % 10);
          h = Mix(h);
        }
      }
      *value = s;
    }
  }
}

// A MedicationDispense for a MedicationRequest entry: same patient, medicine and encounter's
// context, handed over a day after the request was authored.
json::value DispenseFor(const json::object& entry, int serial) {
  const json::object& req = entry.at("resource").as_object();
  std::string full_url(entry.at("fullUrl").as_string());
  std::string id = NewUuid(full_url.substr(full_url.size() - 36), 1000 + serial);
  json::object d;
  d["resourceType"] = "MedicationDispense";
  d["id"] = id;
  d["status"] = "completed";
  if (auto* m = req.if_contains("medicationCodeableConcept")) d["medicationCodeableConcept"] = *m;
  if (auto* m = req.if_contains("medicationReference")) d["medicationReference"] = *m;
  if (auto* s = req.if_contains("subject")) d["subject"] = *s;
  if (auto* e = req.if_contains("encounter")) d["context"] = *e;
  d["authorizingPrescription"] = json::array{json::object{{"reference", full_url}}};
  d["quantity"] =
      json::object{{"value", 30},
                   {"unit", "tablet"},
                   {"system", "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"},
                   {"code", "TAB"}};
  if (auto* a = req.if_contains("authoredOn"); a && a->is_string()) {
    std::string when(a->as_string());
    ShiftDate(when, 1);
    d["whenHandedOver"] = when;
  }
  json::object out;
  out["fullUrl"] = "urn:uuid:" + id;
  out["resource"] = std::move(d);
  out["request"] = json::object{{"method", "POST"}, {"url", "MedicationDispense"}};
  return out;
}

std::string PatientOf(const json::object& bundle) {
  if (auto* es = bundle.if_contains("entry"); es && es->is_array()) {
    for (const auto& e : es->get_array()) {
      const auto* r = e.is_object() ? e.get_object().if_contains("resource") : nullptr;
      if (r && r->is_object() && taproot::GetString(r->get_object(), "resourceType") == "Patient") {
        return std::string(taproot::GetString(r->get_object(), "id"));
      }
    }
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Multiply the Synthea bundles into a larger population for benchmarks"};
  std::string from, out;
  int patients = 1000;
  cli.add_option("--from", from, "Directory of Synthea transaction bundles")->required();
  cli.add_option("--out", out, "Output directory (created)")->required();
  cli.add_option("--patients", patients, "Patients to write")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(from)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::pair<fs::path, json::value>> patient_bundles;
  Names names;
  fs::create_directories(out);
  for (const auto& f : files) {
    auto doc = taproot::ParseJson(taproot::ReadFileText(f.string()));
    if (!doc.ok() || !doc->is_object()) {
      std::fprintf(stderr, "cannot read %s\n", f.c_str());
      return 1;
    }
    if (PatientOf(doc->get_object()).empty()) {
      fs::copy_file(f, fs::path(out) / f.filename(), fs::copy_options::overwrite_existing);
      continue;
    }
    for (const auto& e : doc->at("entry").as_array()) {
      const json::object& r = e.at("resource").as_object();
      if (taproot::GetString(r, "resourceType") != "Patient") continue;
      for (const auto& n : r.at("name").as_array()) {
        const json::object& no = n.as_object();
        if (auto* fam = no.if_contains("family")) names.family.emplace_back(fam->as_string());
        if (auto* g = no.if_contains("given")) {
          for (const auto& x : g->as_array()) names.given.emplace_back(x.as_string());
        }
      }
    }
    patient_bundles.emplace_back(f, std::move(*doc));
  }
  if (patient_bundles.empty() || names.family.empty() || names.given.empty()) {
    std::fprintf(stderr, "no patient bundles in %s\n", from.c_str());
    return 1;
  }
  int64_t resources = 0, written = 0;
  for (int n = 0; n < patients; ++n) {
    int copy = n / static_cast<int>(patient_bundles.size());
    const auto& [path, original] = patient_bundles[n % patient_bundles.size()];
    json::value bundle = original;
    // Up to about four years back, never forward (Synthea's data ends at its generation date).
    int64_t days = copy == 0 ? 0 : -static_cast<int64_t>(Mix(copy) % 1461);
    if (copy > 0) Rewrite(bundle, OwnUuids(bundle.as_object(), copy), days, "");
    json::array& entries = bundle.at("entry").as_array();
    std::vector<json::value> dispenses;
    for (auto& e : entries) {
      json::object& r = e.at("resource").as_object();
      std::string_view type = taproot::GetString(r, "resourceType");
      if (type == "Patient" && copy > 0) RenamePatient(r, names, Hash(path.string(), copy));
      if (type == "MedicationRequest") {
        dispenses.push_back(DispenseFor(e.as_object(), static_cast<int>(dispenses.size())));
      }
    }
    for (auto& d : dispenses) entries.push_back(std::move(d));
    resources += static_cast<int64_t>(entries.size());
    std::string name = path.stem().string() + "-" + std::to_string(copy) + ".json";
    std::ofstream o(fs::path(out) / name, std::ios::binary);
    o << json::serialize(bundle);
    if (!o) {
      std::fprintf(stderr, "cannot write %s\n", name.c_str());
      return 1;
    }
    ++written;
  }
  std::printf("wrote %lld patient bundles (%lld resources) to %s\n",
              static_cast<long long>(written), static_cast<long long>(resources), out.c_str());
  return 0;
}
