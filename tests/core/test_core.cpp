// Core: tensors and views, npy round trips and malformed files, the counter RNG, dtype dispatch.
#define BOOST_TEST_MODULE core
#include <fstream>

#include "crossbatch/crossbatch.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

BOOST_AUTO_TEST_CASE(view_select_narrow_reshape) {
  tensor<float> t({2, 3, 4});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = float(i);
  auto v = t.view();
  BOOST_TEST(v.select(1)(2, 3) == 23.f);
  auto n = v.narrow(2, 1, 2);  // (2, 3, 2)
  BOOST_TEST(n(1, 0, 1) == 14.f);
  BOOST_TEST(!n.contiguous());
  BOOST_CHECK_THROW(n.reshape({12}), shape_error);
  BOOST_TEST(v.reshape({6, 4})(5, 3) == 23.f);
  tensor<float> c = t.clone();
  c(0, 0, 0) = -1;
  BOOST_TEST(t(0, 0, 0) == 0.f);
}

template <class T>
void round_trip(const fs::path& dir, shape_t shape) {
  auto t = cbtest::random_tensor<T>(shape, 7);
  const auto path =
      (dir / (std::string(dtype_traits<T>::name) + "_rank" + std::to_string(shape.size()) + ".npy"))
          .string();
  save_npy(path, t);
  auto u = load_npy<T>(path);
  BOOST_TEST(u.shape() == t.shape());
  BOOST_TEST(std::memcmp(u.data(), t.data(), sizeof(T) * t.size()) == 0);
}

BOOST_AUTO_TEST_CASE(npy_round_trip_all_dtypes) {
  auto dir = cbtest::scratch_dir("npy");
  round_trip<float>(dir, {3, 5});
  round_trip<half>(dir, {7});
  round_trip<bfloat16>(dir, {2, 2, 2});
  round_trip<float>(dir, {});
  tensor<std::int32_t> i32({4});
  tensor<std::int64_t> i64({2, 2});
  tensor<bool> b({3});
  for (int i = 0; i < 4; ++i) i32.data()[i] = -i, i64.data()[i] = std::int64_t(1) << (40 + i);
  b.data()[0] = true, b.data()[1] = false, b.data()[2] = true;
  save_npy((dir / "i32.npy").string(), i32);
  save_npy((dir / "i64.npy").string(), i64);
  save_npy((dir / "b.npy").string(), b);
  BOOST_TEST(load_npy<std::int32_t>((dir / "i32.npy").string())(3) == -3);
  BOOST_TEST(load_npy<std::int64_t>((dir / "i64.npy").string())(1, 1) == std::int64_t(1) << 43);
  BOOST_TEST(load_npy<std::int64_t>((dir / "i32.npy").string())(2) == -2);
  auto bb = load_npy<bool>((dir / "b.npy").string());
  BOOST_TEST((bb(0) && !bb(1) && bb(2)));
  // float32 file loads as half with rounding
  auto as_half = load_npy<half>((dir / "float32_rank2.npy").string());
  auto f = load_npy<float>((dir / "float32_rank2.npy").string());
  BOOST_TEST(std::fabs(float(as_half(1, 1)) - f(1, 1)) <= dtype_traits<half>::epsilon);
  fs::remove_all(dir);
}

// Files written by NumPy itself (tests/data/npy, made by tools/make_npy_fixtures.py).
BOOST_AUTO_TEST_CASE(npy_reads_numpy_files) {
  const auto dir = cbtest::data_dir() + "/npy/";
  auto a = load_npy<float>(dir + "arange_f4_2x3.npy");
  BOOST_TEST(a.shape() == (shape_t{2, 3}));
  BOOST_TEST(a(1, 2) == 5.f);
  auto h = load_npy<float>(dir + "arange_f2_4.npy");
  BOOST_TEST(h(3) == 3.f);
  auto i = load_npy<std::int64_t>(dir + "arange_i8_5.npy");
  BOOST_TEST(i(4) == 4);
  auto b = load_npy<bool>(dir + "mask_b1_2x2.npy");
  BOOST_TEST((b(0, 0) && !b(0, 1) && b(1, 1)));
  BOOST_CHECK_THROW(load_npy<float>(dir + "fortran_f4_2x2.npy"), format_error);
  BOOST_CHECK_THROW(load_npy<float>(dir + "big_endian_f4.npy"), format_error);
}

template <class E>
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    BOOST_ERROR("no exception; expected one mentioning '" << needle << "'");
  } catch (const E& e) {
    BOOST_CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos,
                        "message '" << e.what() << "' lacks '" << needle << "'");
  }
}

BOOST_AUTO_TEST_CASE(npy_malformed_files_name_the_problem) {
  auto dir = cbtest::scratch_dir("npy_bad");
  auto t = cbtest::random_tensor<float>({4, 4}, 1);
  const auto good = (dir / "good.npy").string();
  save_npy(good, t);
  std::string bytes;
  {
    std::ifstream f(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto write = [&](const std::string& name, const std::string& content) {
    const auto p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  const auto truncated = write("truncated.npy", bytes.substr(0, bytes.size() - 10));
  expect_error<format_error>([&] { load_npy<float>(truncated); },
                             "truncated.npy: truncated npy data");
  const auto header_cut = write("header_cut.npy", bytes.substr(0, 20));
  expect_error<format_error>([&] { load_npy<float>(header_cut); }, "truncated npy header");
  const auto not_npy = write("not_npy.npy", "hello world, not numpy");
  expect_error<format_error>([&] { load_npy<float>(not_npy); }, "bad magic");
  expect_error<io_error>([&] { load_npy<float>((dir / "missing.npy").string()); }, "missing.npy");
  expect_error<shape_error>(
      [&] {
        load_npy<float>(good, {4, 5});
      },
      "expected shape (4, 5), got (4, 4)");
  expect_error<format_error>([&] { load_npy<std::int32_t>(good); }, "expected an integer");
  std::string bad_dtype = bytes;
  bad_dtype.replace(bad_dtype.find("<f4"), 3, "<c8");
  const auto complex = write("complex.npy", bad_dtype);
  expect_error<format_error>([&] { load_npy<float>(complex); }, "unsupported npy dtype '<c8'");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(rng_is_counter_based_and_uniform) {
  counter_rng r{42}, r2{42}, other{43};
  BOOST_TEST(r.bits(3, 9) == r2.bits(3, 9));
  BOOST_TEST(r.bits(3, 9) != other.bits(3, 9));
  BOOST_TEST(r.bits(3, 9) != r.bits(3, 10));
  BOOST_TEST(r.bits(3, 9) != r.bits(4, 9));
  // Mean and variance of 100k uniforms: 1/2 and 1/12 within 5 standard errors.
  const int n = 100000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform(i % 7, i / 7);
    BOOST_REQUIRE(u >= 0.0 && u < 1.0);
    s += u, s2 += u * u;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  BOOST_TEST(std::fabs(mean - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  BOOST_TEST(std::fabs(var - 1.0 / 12) < 5 * std::sqrt(1.0 / 180 / n));
}

BOOST_AUTO_TEST_CASE(dtype_dispatch) {
  std::string got;
  dispatch_dtype("bfloat16", [&]<class T>() { got = dtype_traits<T>::name; });
  BOOST_TEST(got == "bfloat16");
  BOOST_CHECK_THROW(dispatch_dtype("int3", [&]<class T>() {}), value_error);
}
