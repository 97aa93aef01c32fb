// A bounded cache of the current version of recently read or written resources, so that a read
// by id usually skips SQLite (whose per-statement WAL locking dominates a read's cost).
//
// Coherence: around each commit the writer (1) marks a commit in flight by making the
// generation odd, (2) drops the entries of the resources it wrote, (3) commits, and (4) makes the
// generation even again, all before it acknowledges the writes. Readers fill the cache on a miss
// only if the generation was even when their query started and is unchanged at the fill. So no
// fill can land between (1) and (4), and none from a query that started earlier: while the new
// version becomes visible in SQLite the cache holds nothing for that resource, and a reader can
// never see the new version from SQLite and then the old one from the cache. Dropping rather
// than inserting keeps the serial writer's extra work to a hash lookup per write, and bulk loads
// out of the cache. Only single-statement reads use it; snapshot reads go to SQLite, which keeps
// their statements mutually consistent.
//
// Bodies are kept compressed. Thread-safe: sharded, one mutex per shard.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "store/store.h"

namespace taproot::store {

class CurrentCache {
 public:
  // The cached form of a current version: everything but the body is as in VersionRecord.
  struct Entry {
    VersionRecord meta;  // json left empty
    std::string compressed_body;
  };

  explicit CurrentCache(size_t capacity_bytes);

  std::optional<Entry> Get(const std::string& type, const std::string& id);
  // Called by the writer between BeginCommit and EndCommit, for each resource it writes.
  void Invalidate(const std::string& type, const std::string& id);
  void Clear();
  // Called by a reader after a miss; `generation` is Generation() read before its query.
  void Fill(Entry entry, uint64_t generation);
  // The same for callers that track commits themselves (PostgreSQL: several at once): the entry
  // goes in only if `unchanged()` holds, tested under the lock Invalidate takes, so that an
  // invalidation either makes the test fail or comes after and removes the entry.
  void FillIf(Entry entry, const std::function<bool()>& unchanged);
  uint64_t Generation() const { return generation_.load(std::memory_order_acquire); }
  // Called by the writer before its COMMIT and after it (whether or not it succeeded).
  void BeginCommit() { generation_.fetch_add(1, std::memory_order_acq_rel); }
  void EndCommit() { generation_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    std::list<std::pair<std::string, Entry>> lru;  // front: most recently used
    std::unordered_map<std::string, std::list<std::pair<std::string, Entry>>::iterator> map;
    size_t bytes = 0;
  };
  static std::string Key(const std::string& type, const std::string& id) { return type + '/' + id; }
  Shard& ShardFor(const std::string& key);
  void Insert(Shard& shard, std::string key, Entry entry);

  size_t shard_capacity_;
  Shard shards_[kShards];
  std::atomic<uint64_t> generation_{0};
};

}  // namespace taproot::store
