// What a compact layout could give FHIRPath (issue 3): the same walk (each entry's
// resource.resourceType compared with "Patient", prefetching 8 entries ahead) over the parsed
// Boost.JSON DOM, as the engine reads it today, and over a compact pre-order tape built from it:
// 8-byte words, an object's member table (interned key id, offset) right after its header, its
// members after that, strings inline. Prints each layout's size and bundles walked per second.
// With more bundles than the last-level cache holds, the walk measures main memory.
//   build/taproot_layout_probe BUNDLE_DIR
// A measurement, not a FHIRPath engine: bench/RESULTS.md (twelfth session) says what it showed.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>
namespace json = boost::json;

namespace {

// Interned keys: the tape holds a key's number, not its text.
uint32_t KeyId(std::string_view k) {
  static std::unordered_map<std::string, uint32_t> ids;
  return ids.emplace(std::string(k), static_cast<uint32_t>(ids.size())).first->second;
}
enum Kind : uint64_t { kObj = 1, kArr = 2, kStr = 3, kNum = 4 };  // kNum: numbers, booleans, null
// header: kind (8) | count (24) | words to skip incl. header (32)
struct Tape {
  std::vector<uint64_t> w;
  size_t Build(const json::value& v) {
    size_t at = w.size();
    if (v.is_object()) {
      const auto& o = v.get_object();
      w.push_back(0);
      size_t table = w.size();
      w.resize(w.size() + o.size());
      size_t i = 0;
      for (const auto& kv : o) {
        size_t child = Build(kv.value());
        w[table + i++] = (uint64_t(KeyId(kv.key())) << 32) | uint64_t(child - at);
      }
      w[at] = kObj | (uint64_t(o.size()) << 8) | (uint64_t(w.size() - at) << 32);
    } else if (v.is_array()) {
      const auto& a = v.get_array();
      w.push_back(0);
      size_t table = w.size();
      w.resize(w.size() + a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        size_t child = Build(a[i]);
        w[table + i] = child - at;
      }
      w[at] = kArr | (uint64_t(a.size()) << 8) | (uint64_t(w.size() - at) << 32);
    } else if (v.is_string()) {
      const auto& s = v.get_string();
      size_t words = (s.size() + 7) / 8;
      w.push_back(kStr | (uint64_t(s.size()) << 8) | (uint64_t(1 + words) << 32));
      size_t p = w.size();
      w.resize(w.size() + words);
      std::memcpy(&w[p], s.data(), s.size());
    } else {
      w.push_back(kNum | (uint64_t(2) << 32));  // a header and a word
      w.push_back(0);
    }
    return at;
  }
};
// The member `key` of the object at `at`, or 0.
inline size_t Find(const uint64_t* w, size_t at, uint32_t key) {
  uint64_t h = w[at];
  size_t n = (h >> 8) & 0xffffff;
  for (size_t i = 0; i < n; ++i) {
    uint64_t e = w[at + 1 + i];
    if ((e >> 32) == key) return at + (e & 0xffffffff);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s BUNDLE_DIR\n", argv[0]);
    return 2;
  }
  std::vector<json::value> doms;
  std::vector<Tape> tapes;
  for (auto& e : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    doms.push_back(json::parse(ss.str(), json::make_shared_resource<json::monotonic_resource>()));
  }
  size_t words = 0;
  for (auto& d : doms) {
    tapes.emplace_back();
    tapes.back().Build(d);
    words += tapes.back().w.size();
  }
  std::printf("bundles %zu, tape %.0f MB\n", doms.size(), words * 8 / 1e6);
  uint32_t k_entry = KeyId("entry"), k_res = KeyId("resource"), k_rt = KeyId("resourceType");
  for (int round = 0; round < 2; ++round) {
    // Boost DOM
    auto t0 = std::chrono::steady_clock::now();
    long hits = 0, evals = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
      for (auto& d : doms) {
        const auto* entry = d.get_object().if_contains("entry");
        if (!entry) continue;
        const auto& arr = entry->get_array();
        for (size_t k = 0; k < arr.size(); ++k) {
          if (k + 8 < arr.size()) __builtin_prefetch(arr[k + 8].get_object().begin());
          const auto& eo = arr[k].get_object();
          const json::value* r = nullptr;
          for (const auto& kv : eo)
            if (kv.key().size() == 8 && kv.key() == "resource") {
              r = &kv.value();
              break;
            }
          if (!r) continue;
          for (const auto& kv : r->get_object())
            if (kv.key().size() == 12 && kv.key() == "resourceType") {
              hits += kv.value().get_string() == "Patient";
              break;
            }
        }
        ++evals;
      }
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("boost DOM: %.0f bundles/s, %.3f Patients a bundle\n", evals / s,
                double(hits) / evals);
    // Tape
    t0 = std::chrono::steady_clock::now();
    hits = 0;
    evals = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
      for (auto& t : tapes) {
        const uint64_t* w = t.w.data();
        size_t ent = Find(w, 0, k_entry);
        if (!ent) continue;
        size_t n = (w[ent] >> 8) & 0xffffff;
        for (size_t k = 0; k < n; ++k) {
          if (k + 8 < n) __builtin_prefetch(&w[ent + w[ent + 1 + k + 8]]);
          size_t eo = ent + w[ent + 1 + k];
          size_t r = Find(w, eo, k_res);
          if (!r) continue;
          size_t rt = Find(w, r, k_rt);
          if (!rt) continue;
          size_t len = (w[rt] >> 8) & 0xffffff;
          hits += len == 7 && std::memcmp(&w[rt + 1], "Patient", 7) == 0;
        }
        ++evals;
      }
    }
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("tape: %.0f bundles/s, %.3f Patients a bundle\n", evals / s, double(hits) / evals);
  }
}
