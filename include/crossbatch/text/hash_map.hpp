// Small hash containers for the tokenizer hot paths: a string-keyed map that accepts string_view
// lookups without allocating, and an open-addressing map from a pair of token ids to a merge.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace crossbatch::text {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    // FNV-1a over 8-byte words: fast on the short keys tokenizers look up.
    std::uint64_t h = 0xcbf29ce484222325ull ^ s.size();
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      std::uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      h = (h ^ w) * 0x100000001b3ull;
      h ^= h >> 29;
    }
    std::uint64_t tail = 0;
    if (i < s.size()) __builtin_memcpy(&tail, s.data() + i, s.size() - i);
    h = (h ^ tail) * 0x100000001b3ull;
    h ^= h >> 32;
    return static_cast<std::size_t>(h * 0x9E3779B97F4A7C15ull >> 7);
  }
};

template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

// A bounded cache from byte strings to short id sequences, stored flat (keys and values in two
// arenas, an open-addressing index): the per-word cache of the BPE model. When full it starts over.
class word_cache {
 public:
  explicit word_cache(std::size_t max_words = 1 << 16) : m_max(max_words) {}

  // The ids cached for word, or nullptr.
  const std::int32_t* find(std::string_view word, std::size_t& count) const {
    if (m_slots.empty()) return nullptr;
    const std::size_t h = string_hash{}(word);
    for (std::size_t i = static_cast<std::uint32_t>(h) & (m_slots.size() - 1);;
         i = (i + 1) & (m_slots.size() - 1)) {
      const slot& s = m_slots[i];
      if (s.key_len == empty) return nullptr;
      if (s.hash == static_cast<std::uint32_t>(h) && s.key_len == word.size() &&
          std::char_traits<char>::compare(m_keys.data() + s.key_offset, word.data(), word.size()) ==
              0) {
        count = s.value_len;
        return m_values.data() + s.value_offset;
      }
    }
  }

  void insert(std::string_view word, const std::int32_t* ids, std::size_t count) {
    if (word.size() >= empty || count >= empty) return;  // too long to be worth caching
    if (m_size >= m_max || m_keys.size() + word.size() > (1u << 30) ||
        m_values.size() + count > (1u << 30))
      clear();
    if ((m_size + 1) * 2 > m_slots.size()) grow();
    const std::size_t h = string_hash{}(word);
    std::size_t i = static_cast<std::uint32_t>(h) & (m_slots.size() - 1);
    while (m_slots[i].key_len != empty) i = (i + 1) & (m_slots.size() - 1);
    m_slots[i] = {static_cast<std::uint32_t>(h), static_cast<std::uint32_t>(m_keys.size()),
                  static_cast<std::uint32_t>(m_values.size()),
                  static_cast<std::uint16_t>(word.size()), static_cast<std::uint16_t>(count)};
    m_keys.append(word);
    m_values.insert(m_values.end(), ids, ids + count);
    ++m_size;
  }

  // Forgets everything and releases the index (cheap, so that caches may be recycled often).
  void clear() {
    m_slots.clear();
    m_slots.shrink_to_fit();
    m_keys.clear();
    m_values.clear();
    m_size = 0;
  }

 private:
  static constexpr std::uint16_t empty = 0xFFFF;
  struct slot {
    std::uint32_t hash, key_offset, value_offset;
    std::uint16_t key_len, value_len;
  };
  static slot empty_slot() { return {0, 0, 0, empty, 0}; }
  // Doubles the index (starting small) and re-inserts the words.
  void grow() {
    std::vector<slot> old(m_slots.empty() ? 256 : 2 * m_slots.size(), empty_slot());
    old.swap(m_slots);
    for (const slot& s : old) {
      if (s.key_len == empty) continue;
      std::size_t i = s.hash & (m_slots.size() - 1);
      while (m_slots[i].key_len != empty) i = (i + 1) & (m_slots.size() - 1);
      m_slots[i] = s;
    }
  }

  std::size_t m_max, m_size = 0;
  std::vector<slot> m_slots;
  std::string m_keys;
  std::vector<std::int32_t> m_values;
};

// Values indexed by token id: a vector when the ids are dense (the normal case), a hash map when a
// file uses a few huge ids (so that a malformed id cannot make us allocate gigabytes).
template <class T>
class id_table {
 public:
  void reset(std::size_t count, std::int64_t max_id) {
    m_dense.clear();
    m_has.clear();
    m_sparse.clear();
    m_use_dense = max_id < static_cast<std::int64_t>(2 * count + 1024);
    if (m_use_dense && max_id >= 0) {
      m_dense.resize(static_cast<std::size_t>(max_id) + 1);
      m_has.assign(static_cast<std::size_t>(max_id) + 1, false);
    }
  }
  // Sets the value of id unless it has one already (the first wins).
  void set_if_absent(std::int32_t id, T value) {
    if (id < 0) return;
    if (m_use_dense) {
      if (static_cast<std::size_t>(id) >= m_dense.size() || m_has[id]) return;
      m_dense[id] = std::move(value);
      m_has[id] = true;
    } else {
      m_sparse.emplace(id, std::move(value));
    }
  }
  const T* get(std::int32_t id) const {
    if (id < 0) return nullptr;
    if (m_use_dense)
      return static_cast<std::size_t>(id) < m_dense.size() && m_has[id] ? &m_dense[id] : nullptr;
    auto it = m_sparse.find(id);
    return it == m_sparse.end() ? nullptr : &it->second;
  }

 private:
  bool m_use_dense = true;
  std::vector<T> m_dense;
  std::vector<bool> m_has;
  std::unordered_map<std::int32_t, T> m_sparse;
};

// A serial number for an owner of per-thread word caches (never reused, unlike addresses).
inline std::uint64_t next_cache_serial() {
  static std::atomic<std::uint64_t> counter{1};
  return counter++;
}

// The calling thread's word cache number `which` (0 or 1) of the owner `serial`. A thread keeps the
// caches of its eight most recently used owners.
inline word_cache& thread_word_cache(std::uint64_t serial, int which) {
  struct entry {
    std::uint64_t serial = 0;
    word_cache caches[2];
  };
  thread_local std::vector<std::unique_ptr<entry>> entries;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i]->serial == serial) {
      if (i) std::swap(entries[i], entries[0]);
      return entries[0]->caches[which];
    }
  }
  if (entries.size() < 8) entries.push_back(std::make_unique<entry>());
  std::rotate(entries.rbegin(), entries.rbegin() + 1, entries.rend());
  entries[0]->serial = serial;
  entries[0]->caches[0].clear();
  entries[0]->caches[1].clear();
  return entries[0]->caches[which];
}

// Map (left id, right id) -> value with linear probing; keys are never erased.
template <class V>
class pair_map {
 public:
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    if (cap > m_keys.size()) rehash(cap);
  }

  // Inserts or overwrites.
  void assign(std::int32_t a, std::int32_t b, const V& v) {
    if ((m_size + 1) * 2 > m_keys.size()) rehash(m_keys.empty() ? 16 : m_keys.size() * 2);
    const std::uint64_t key = pack(a, b);
    std::size_t i = slot(key);
    while (m_keys[i] != empty_key && m_keys[i] != key) i = (i + 1) & (m_keys.size() - 1);
    if (m_keys[i] == empty_key) {
      m_keys[i] = key;
      ++m_size;
    }
    m_values[i] = v;
  }

  const V* find(std::int32_t a, std::int32_t b) const {
    if (m_keys.empty()) return nullptr;
    const std::uint64_t key = pack(a, b);
    std::size_t i = slot(key);
    while (true) {
      if (m_keys[i] == key) return &m_values[i];
      if (m_keys[i] == empty_key) return nullptr;
      i = (i + 1) & (m_keys.size() - 1);
    }
  }

  std::size_t size() const { return m_size; }

 private:
  static constexpr std::uint64_t empty_key = ~0ull;
  static std::uint64_t pack(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  // splitmix64's finalizer: every key bit reaches the low bits used as the slot.
  static std::size_t mix(std::uint64_t key) {
    key ^= key >> 30;
    key *= 0xBF58476D1CE4E5B9ull;
    key ^= key >> 27;
    key *= 0x94D049BB133111EBull;
    key ^= key >> 31;
    return static_cast<std::size_t>(key);
  }
  std::size_t slot(std::uint64_t key) const { return mix(key) & (m_keys.size() - 1); }
  void rehash(std::size_t cap) {
    std::vector<std::uint64_t> keys(cap, empty_key);
    std::vector<V> values(cap);
    for (std::size_t i = 0; i < m_keys.size(); ++i) {
      if (m_keys[i] == empty_key) continue;
      std::size_t j = mix(m_keys[i]) & (cap - 1);
      while (keys[j] != empty_key) j = (j + 1) & (cap - 1);
      keys[j] = m_keys[i];
      values[j] = m_values[i];
    }
    m_keys.swap(keys);
    m_values.swap(values);
  }

  std::vector<std::uint64_t> m_keys;
  std::vector<V> m_values;
  std::size_t m_size = 0;
};

}  // namespace crossbatch::text
