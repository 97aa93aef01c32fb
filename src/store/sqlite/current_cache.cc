#include "store/sqlite/current_cache.h"

#include <functional>

namespace taproot::store {
namespace {

size_t SizeOf(const std::string& key, const CurrentCache::Entry& e) {
  return key.size() * 2 + e.compressed_body.size() + e.meta.type.size() + e.meta.id.size() + 128;
}

}  // namespace

CurrentCache::CurrentCache(size_t capacity_bytes) : shard_capacity_(capacity_bytes / kShards) {}

CurrentCache::Shard& CurrentCache::ShardFor(const std::string& key) {
  return shards_[std::hash<std::string>{}(key) % kShards];
}

std::optional<CurrentCache::Entry> CurrentCache::Get(const std::string& type,
                                                     const std::string& id) {
  if (shard_capacity_ == 0) return std::nullopt;
  std::string key = Key(type, id);
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.map.find(key);
  if (it == shard.map.end()) return std::nullopt;
  shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
  return it->second->second;
}

void CurrentCache::Insert(Shard& shard, std::string key, Entry entry) {
  auto it = shard.map.find(key);
  if (it != shard.map.end()) {
    shard.bytes -= SizeOf(it->first, it->second->second);
    shard.lru.erase(it->second);
    shard.map.erase(it);
  }
  size_t size = SizeOf(key, entry);
  if (size > shard_capacity_) return;
  shard.lru.emplace_front(key, std::move(entry));
  shard.map.emplace(std::move(key), shard.lru.begin());
  shard.bytes += size;
  while (shard.bytes > shard_capacity_ && !shard.lru.empty()) {
    auto& last = shard.lru.back();
    shard.bytes -= SizeOf(last.first, last.second);
    shard.map.erase(last.first);
    shard.lru.pop_back();
  }
}

void CurrentCache::Invalidate(const std::string& type, const std::string& id) {
  if (shard_capacity_ == 0) return;
  std::string key = Key(type, id);
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.map.find(key);
  if (it == shard.map.end()) return;
  shard.bytes -= SizeOf(it->first, it->second->second);
  shard.lru.erase(it->second);
  shard.map.erase(it);
}

void CurrentCache::Clear() {
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    shard.lru.clear();
    shard.map.clear();
    shard.bytes = 0;
  }
}

void CurrentCache::Fill(Entry entry, uint64_t generation) {
  // An odd generation means a commit was in flight when the query started. Checking under the
  // shard lock that no commit has begun since: any later commit's Invalidate for this key
  // takes the same lock after us and removes what we insert.
  FillIf(std::move(entry), [&] { return (generation & 1) == 0 && Generation() == generation; });
}

void CurrentCache::FillIf(Entry entry, const std::function<bool()>& unchanged) {
  if (shard_capacity_ == 0) return;
  std::string key = Key(entry.meta.type, entry.meta.id);
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mu);
  if (!unchanged() || shard.map.count(key)) return;
  Insert(shard, std::move(key), std::move(entry));
}

}  // namespace taproot::store
