// The CPU decode kernels (ops/cpu/gemv.hpp, ops/cpu/parallel.hpp, linear() in ops/cpu/linear.hpp)
// against an independent double-precision reference: odd shapes (rows and columns that are not
// multiples of the 16-lane vector), batches 1..17 (both sides of the GEMV/GEMM switch at 16),
// float/half/bfloat16 weights, 1..3 threads; 16-bit widening exact for every bit pattern; the
// bfloat16-x kernel (vdpbf16ps) where the CPU has it; every work chunk run exactly once.
#define BOOST_TEST_MODULE cpu_linear
#include <atomic>
#include <cstring>
#include <thread>

#include "crossbatch/core/npy.hpp"
#include "crossbatch/ops/cpu/linear.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

namespace {

// ref (N, O) = x W^T + b in double, from the stored (already rounded) values.
template <class T>
std::vector<double> reference(const tensor<T>& x, const tensor<T>& w, const tensor<T>* b) {
  const index_t n = x.dim(0), in = x.dim(1), o = w.dim(0);
  std::vector<double> y(std::size_t(n * o));
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < o; ++r) {
      double s = b ? double(static_cast<float>(b->data()[r])) : 0.0;
      for (index_t j = 0; j < in; ++j)
        s += double(static_cast<float>(x.data()[i * in + j])) *
             double(static_cast<float>(w.data()[r * in + j]));
      y[i * o + r] = s;
    }
  return y;
}

const std::vector<std::pair<index_t, index_t>> shapes = {  // (O, I)
    {1, 1}, {3, 15}, {7, 17}, {37, 63}, {130, 129}, {65, 200}, {300, 577}};

template <class T>
void check_linear_for_type() {
  unsigned seed = 1;
  for (auto [o, in] : shapes)
    for (index_t n = 1; n <= 17; n += (n < 5 || n >= 15) ? 1 : 5)
      for (int threads = 1; threads <= 3; ++threads)
        for (bool with_bias : {false, true}) {
          const float a = std::sqrt(3.0f / float(in));  // outputs of O(1)
          const auto x = cbtest::random_tensor<T>({n, in}, seed++);
          const auto w = cbtest::random_tensor<T>({o, in}, seed++, -a, a);
          const auto b = cbtest::random_tensor<T>({o}, seed++);
          tensor<T> y({n, o});
          linear(cpu_context(threads), y.view(), x.view(), w.view(),
                 with_bias ? b.view() : tensor_view<const T>{});
          const auto want = reference(x, w, with_bias ? &b : nullptr);
          cbtest::diff_stats st(dtype_traits<T>::atol, dtype_traits<T>::rtol);
          for (index_t i = 0; i < y.size(); ++i)
            st.add(double(static_cast<float>(y.data()[i])), want[std::size_t(i)]);
          BOOST_TEST(st.ok(), dtype_traits<T>::name
                                  << " linear N=" << n << " O=" << o << " I=" << in << " threads="
                                  << threads << " bias=" << with_bias << ": " << st.summary());
        }
}

}  // namespace

BOOST_AUTO_TEST_CASE(linear_matches_the_double_reference_for_odd_shapes_and_batches_1_to_17) {
  check_linear_for_type<float>();
  check_linear_for_type<half>();
  check_linear_for_type<bfloat16>();
}

BOOST_AUTO_TEST_CASE(gemv_kernel_sums_16_bit_weights_to_float_accuracy) {
  // Before any narrowing of the output: the float sums of 16-bit weights are as accurate as those
  // of float weights (float tolerance against double).
  auto run = [&]<class W>() {
    unsigned seed = 100;
    for (auto [o, in] : shapes)
      for (index_t n : {1, 2, 3, 4, 5, 9, 16}) {
        const float a = std::sqrt(3.0f / float(in));
        const auto x = cbtest::random_tensor<float>({n, in}, seed++);
        const auto w = cbtest::random_tensor<W>({o, in}, seed++, -a, a);
        std::vector<float> y(std::size_t(n * o), NAN);
        cpu_detail::gemv_rows(w.data(), in, in, x.data(), in, n, y.data(), o, 0, o);
        tensor<float> xf({n, in});
        std::copy(x.data(), x.data() + x.size(), xf.data());
        tensor<float> wf({o, in});
        for (index_t i = 0; i < w.size(); ++i) wf.data()[i] = static_cast<float>(w.data()[i]);
        const auto want = reference<float>(xf, wf, nullptr);
        cbtest::diff_stats st(dtype_traits<float>::atol, dtype_traits<float>::rtol);
        for (std::size_t i = 0; i < y.size(); ++i) st.add(y[i], want[i]);
        BOOST_TEST(st.ok(), dtype_traits<W>::name << " gemv_rows N=" << n << " O=" << o
                                                  << " I=" << in << ": " << st.summary());
      }
  };
  run.template operator()<float>();
  run.template operator()<half>();
  run.template operator()<bfloat16>();
}

BOOST_AUTO_TEST_CASE(gemv_kernel_with_bfloat16_x_sums_to_float_accuracy) {
  // The vdpbf16ps path (bfloat16 x against bfloat16 W, no widening) against the double sums of the
  // stored values, float tolerance, every odd shape and batch (masked tails of 1..31 lanes).
  if constexpr (cpu_detail::gemv_native_x<bfloat16>) {
    unsigned seed = 300;
    for (auto [o, in] : shapes)
      for (index_t n : {1, 2, 3, 4, 5, 9, 16}) {
        const float a = std::sqrt(3.0f / float(in));
        const auto x = cbtest::random_tensor<bfloat16>({n, in}, seed++);
        const auto w = cbtest::random_tensor<bfloat16>({o, in}, seed++, -a, a);
        std::vector<float> y(std::size_t(n * o), NAN);
        cpu_detail::gemv_rows(w.data(), in, in, x.data(), in, n, y.data(), o, 0, o);
        const auto want = reference<bfloat16>(x, w, nullptr);
        cbtest::diff_stats st(dtype_traits<float>::atol, dtype_traits<float>::rtol);
        for (std::size_t i = 0; i < y.size(); ++i) st.add(y[i], want[i]);
        BOOST_TEST(st.ok(), "bfloat16 x gemv_rows N=" << n << " O=" << o << " I=" << in << ": "
                                                      << st.summary());
      }
  } else {
    BOOST_TEST_MESSAGE("skipped: built without AVX512_BF16, bfloat16 x is widened to float");
  }
}

BOOST_AUTO_TEST_CASE(widening_of_16_bit_weights_is_exact_for_every_finite_bit_pattern) {
  // W holds every finite 16-bit pattern (subnormals, signed zeros included), 64 to a row; x rows
  // are unit vectors, so y(i, r) = W(r, j_i) exactly, through the vector path and the masked tail.
  auto run = [&]<class W>() {
    std::vector<W> values;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
      const auto v = Eigen::numext::bit_cast<W>(std::uint16_t(bits));
      if (std::isfinite(static_cast<float>(v))) values.push_back(v);
    }
    for (index_t in : {64, 61}) {  // 61: the last 13 columns go through the masked load
      const index_t o = index_t(values.size()) / in;
      tensor<W> w({o, in});
      std::copy(values.begin(), values.begin() + o * in, w.data());
      std::int64_t wrong = 0;
      for (index_t j0 = 0; j0 < in; j0 += 16) {
        const index_t n = std::min<index_t>(16, in - j0);
        std::vector<float> x(std::size_t(n * in), 0.0f), y(std::size_t(n * o), NAN);
        for (index_t i = 0; i < n; ++i) x[std::size_t(i * in + j0 + i)] = 1.0f;
        cpu_detail::gemv_rows(w.data(), in, in, x.data(), in, n, y.data(), o, 0, o);
        for (index_t i = 0; i < n; ++i)
          for (index_t r = 0; r < o; ++r) {
            const float want = static_cast<float>(w.data()[r * in + j0 + i]);
            const float got = y[std::size_t(i * o + r)];
            // Exact (== counts -0 equal to +0: the sum starts at +0).
            if (!(got == want)) ++wrong;
          }
      }
      BOOST_TEST(wrong == 0, dtype_traits<W>::name << ", I=" << in << ": " << wrong << " of "
                                                   << o * in << " weights widened wrongly");
    }
  };
  run.template operator()<half>();
  run.template operator()<bfloat16>();
}

BOOST_AUTO_TEST_CASE(sixteen_bit_storage_round_trip_from_float_npy) {
  // A float32 npy loaded as half/bfloat16 holds the round-to-nearest-even of each value, which
  // converts back to float exactly; values already representable survive unchanged.
  const auto dir = cbtest::scratch_dir("cpu_linear_npy");
  auto f = cbtest::random_tensor<float>({7, 33}, 5, -300.f, 300.f);
  f.data()[0] = 1.5f, f.data()[1] = -0.0078125f, f.data()[2] = 2048.f;  // exact in both
  save_npy((dir / "w.npy").string(), f);
  auto run = [&]<class W>() {
    const auto w = load_npy<W>((dir / "w.npy").string(), {7, 33});
    for (index_t i = 0; i < f.size(); ++i) {
      const W want = static_cast<W>(f.data()[i]);
      BOOST_TEST(Eigen::numext::bit_cast<std::uint16_t>(w.data()[i]) ==
                     Eigen::numext::bit_cast<std::uint16_t>(want),
                 dtype_traits<W>::name << " element " << i);
      const float back = static_cast<float>(w.data()[i]);
      BOOST_TEST(std::fabs(back - f.data()[i]) <=
                 dtype_traits<W>::epsilon * std::fabs(f.data()[i]));
    }
    for (int i = 0; i < 3; ++i) BOOST_TEST(static_cast<float>(w.data()[i]) == f.data()[i]);
  };
  run.template operator()<half>();
  run.template operator()<bfloat16>();
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(threads_give_bitwise_the_one_thread_result) {
  // Every output element is computed by one thread in one fixed order, so the thread count
  // cannot change a bit (decode and prefill sizes).
  const auto w = cbtest::random_tensor<float>({1000, 100}, 7, -0.2f, 0.2f);
  for (index_t n : {1, 8, 40}) {
    const auto x = cbtest::random_tensor<float>({n, 100}, 8);
    tensor<float> y1({n, 1000}), y3({n, 1000});
    linear(cpu_context(1), y1.view(), x.view(), w.view());
    linear(cpu_context(3), y3.view(), x.view(), w.view());
    BOOST_TEST(std::memcmp(y1.data(), y3.data(), sizeof(float) * y1.size()) == 0, "N=" << n);
  }
}

BOOST_AUTO_TEST_CASE(parallel_chunks_runs_every_chunk_once_also_with_concurrent_callers) {
  for (int threads : {1, 2, 4})
    for (index_t chunks : {0, 1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(chunks));
      for (int rep = 0; rep < 20; ++rep)
        cpu_detail::parallel_chunks(threads, chunks, [&](index_t c) { hits[std::size_t(c)]++; });
      int bad = 0;
      for (auto& h : hits) bad += h.load() != 20;
      BOOST_TEST(bad == 0, threads << " threads, " << chunks << " chunks");
    }
  // Two caller threads at once: one gets the pool, the other runs alone; both complete.
  std::vector<std::atomic<int>> a(500), b(500);
  std::thread other([&] {
    for (int rep = 0; rep < 200; ++rep)
      cpu_detail::parallel_chunks(2, 500, [&](index_t c) { a[std::size_t(c)]++; });
  });
  for (int rep = 0; rep < 200; ++rep)
    cpu_detail::parallel_chunks(2, 500, [&](index_t c) { b[std::size_t(c)]++; });
  other.join();
  int bad = 0;
  for (int i = 0; i < 500; ++i) bad += (a[i].load() != 200) + (b[i].load() != 200);
  BOOST_TEST(bad == 0);
}
