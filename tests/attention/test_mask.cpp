// Mask policies against brute force on random shapes: allowed() against the definition, and
// tile_kind() never wrong (empty => nothing allowed, full => everything allowed) and exact where
// the policy can know exactly.
#define BOOST_TEST_MODULE mask
#include <random>

#include "crossbatch/attention/mask.hpp"
#include "support.hpp"

using namespace crossbatch;

namespace {

// Brute-force classification of a block.
template <class M>
tile brute(const M& m, int s, int q0, int q1, int k0, int k1) {
  bool any = false, all = true;
  for (int q = q0; q < q1; ++q)
    for (int k = k0; k < k1; ++k) {
      const bool a = m.allowed(s, q, k);
      any |= a;
      all &= a;
    }
  return !any ? tile::empty : all ? tile::full : tile::partial;
}

// Checks tile_kind on random blocks; `exact` demands equality with brute force.
template <class M>
void check_tiles(const M& m, int batch, int slots, std::mt19937& gen, bool exact,
                 const char* name) {
  std::uniform_int_distribution<int> pos(0, slots - 1), len(1, 24);
  int checked = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int s = trial % batch;
    const int q0 = pos(gen), k0 = pos(gen);
    const int q1 = std::min(slots, q0 + len(gen)), k1 = std::min(slots, k0 + len(gen));
    const tile want = brute(m, s, q0, q1, k0, k1), got = m.tile_kind(s, q0, q1, k0, k1);
    if (exact) {
      BOOST_REQUIRE_MESSAGE(got == want, name << ": block [" << q0 << "," << q1 << ")x[" << k0
                                              << "," << k1 << ") seq " << s << " tile_kind "
                                              << int(got) << " brute " << int(want));
    } else {
      BOOST_REQUIRE_MESSAGE(got == tile::partial || got == want,
                            name << ": unsound tile_kind on block [" << q0 << "," << q1 << ")x["
                                 << k0 << "," << k1 << ")");
    }
    ++checked;
  }
  BOOST_TEST(checked == 3000);
}

}  // namespace

BOOST_AUTO_TEST_CASE(causal_and_window) {
  std::mt19937 gen(1);
  causal c;
  for (int q = 0; q < 20; ++q)
    for (int k = 0; k < 20; ++k) BOOST_REQUIRE(c.allowed(0, q, k) == (k <= q));
  check_tiles(c, 1, 200, gen, true, "causal");
  for (int w : {1, 3, 17, 64}) {
    sliding_window sw{w};
    for (int q = 0; q < 40; ++q)
      for (int k = 0; k < 40; ++k) BOOST_REQUIRE(sw.allowed(0, q, k) == (q - k < w));
    check_tiles(sw, 1, 200, gen, true, "sliding_window");
    check_tiles(all_of<causal, sliding_window>(causal{}, sw), 1, 200, gen, false, "causal+window");
  }
}

BOOST_AUTO_TEST_CASE(padding) {
  std::mt19937 gen(2);
  std::vector<int> pad = {0, 5, 37, 120}, len = {200, 1, 64, 150};
  left_padding lp{pad.data()};
  right_padding rp{len.data()};
  for (int s = 0; s < 4; ++s)
    for (int k = 0; k < 200; ++k) {
      BOOST_REQUIRE(lp.allowed(s, 199, k) == (k >= pad[s]));
      BOOST_REQUIRE(rp.allowed(s, 0, k) == (k < len[s]));
    }
  check_tiles(lp, 4, 200, gen, true, "left_padding");
  check_tiles(rp, 4, 200, gen, true, "right_padding");
  // The conjunction is sound; with one part full the other decides exactly.
  check_tiles(all_of<causal, left_padding>(causal{}, lp), 4, 200, gen, false,
              "causal+left_padding");
}

BOOST_AUTO_TEST_CASE(segment_isolation_semantics_and_tiles) {
  std::mt19937 gen(3);
  const int batch = 3, slots = 160;
  for (int trial = 0; trial < 20; ++trial) {
    // Random layout per sequence: prefix, then 1..5 segments of random lengths, then generation.
    std::vector<int> seg(batch * slots), gen_start(batch);
    for (int s = 0; s < batch; ++s) {
      std::uniform_int_distribution<int> prefix_len(0, 20), nseg(1, 5), seg_len(1, 25);
      int slot = 0;
      for (int p = prefix_len(gen); p > 0 && slot < slots; --p) seg[s * slots + slot++] = 0;
      for (int id = 1, n = nseg(gen); id <= n; ++id)
        for (int l = seg_len(gen); l > 0 && slot < slots; --l) seg[s * slots + slot++] = id;
      gen_start[s] = slot;
      for (; slot < slots; ++slot) seg[s * slots + slot] = -1;
    }
    segment_isolation m{seg.data(), gen_start.data(), slots};
    for (int s = 0; s < batch; ++s)
      for (int q = 0; q < slots; ++q)
        for (int k = 0; k < slots; ++k) {
          const bool q_gen = q >= gen_start[s], k_gen = k >= gen_start[s];
          const int sq = seg[s * slots + q], sk = seg[s * slots + k];
          const bool want = q_gen || (!k_gen && (sk == 0 || sk == sq));
          BOOST_REQUIRE_MESSAGE(m.allowed(s, q, k) == want,
                                "segment_isolation allowed(" << s << "," << q << "," << k << ")");
        }
    check_tiles(m, batch, slots, gen, false, "segment_isolation");
    check_tiles(all_of<causal, segment_isolation>(causal{}, m), batch, slots, gen, false,
                "causal+segments");
    // Single-segment and prefix blocks are classified exactly, so kernels can skip/trust them.
    for (int s = 0; s < batch; ++s) {
      const int a = gen_start[s];
      if (a >= 2) BOOST_TEST((m.tile_kind(s, a - 1, a, 0, 1) != tile::partial));
      BOOST_TEST((m.tile_kind(s, a, slots, 0, slots) == tile::full || a >= slots));
    }
  }
}

BOOST_AUTO_TEST_CASE(segment_isolation_skips_cross_segment_tiles) {
  // 5 segments of 32 slots, no prefix: a block inside segment 2 against segment 4 is empty.
  std::vector<int> seg(160), gs = {160};
  for (int i = 0; i < 160; ++i) seg[i] = 1 + i / 32;
  segment_isolation m{seg.data(), gs.data(), 160};
  BOOST_TEST((m.tile_kind(0, 32, 64, 128, 160) == tile::empty));
  BOOST_TEST((m.tile_kind(0, 32, 64, 32, 64) == tile::full));
  BOOST_TEST((m.tile_kind(0, 32, 64, 0, 64) == tile::partial));
}
