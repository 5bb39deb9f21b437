// Robustness of the npy reader: every malformed file (oversized or overflowing dimensions, a shape
// larger than the data, garbled or truncated headers, trailing bytes, bad magic, unsupported
// version or dtype, Fortran order, missing / repeated / unknown keys) throws format_error naming
// the file and the problem, never std::out_of_range, std::invalid_argument, bad_alloc or anything
// else; both from memory (parse_npy, which the fuzzer drives) and from a file (read_npy /
// load_npy).
#define BOOST_TEST_MODULE npy
#include <cstring>
#include <fstream>
#include <functional>
#include <typeinfo>

#include "crossbatch/core/npy.hpp"
#include "support.hpp"

using namespace crossbatch;
namespace fs = std::filesystem;

namespace {

// An .npy file: magic, version, little-endian header length, the header padded with spaces to a
// multiple of 64 and ended by '\n', then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const std::size_t total = 8 + len_bytes + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  for (std::size_t k = 0; k < len_bytes; ++k) out += char((header.size() >> (8 * k)) & 0xff);
  return out + header + data;
}

std::string dict(const std::string& descr, const std::string& order, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }";
}

std::string floats(std::size_t n) { return std::string(4 * n, '\0'); }

// f() throws format_error whose message starts with "<name>: " and contains needle; any other
// exception (or none) fails.
void expect_format_error(const std::function<void()>& f, const std::string& name,
                         const std::string& needle) {
  try {
    f();
    BOOST_ERROR(name << ": no exception; expected a format_error mentioning '" << needle << "'");
  } catch (const format_error& e) {
    const std::string m = e.what();
    BOOST_CHECK_MESSAGE(m.rfind(name + ": ", 0) == 0,
                        "message '" << m << "' does not name " << name);
    BOOST_CHECK_MESSAGE(m.find(needle) != std::string::npos,
                        "message '" << m << "' lacks '" << needle << "'");
  } catch (const std::exception& e) {
    BOOST_ERROR(name << ": wrong exception type " << typeid(e).name() << ": " << e.what());
  }
}

struct bad_case {
  std::string name, bytes, needle;
};

std::vector<bad_case> bad_cases() {
  const std::string good = npy_bytes(dict("<f4", "False", "(3, 4)"), floats(12));
  std::vector<bad_case> c = {
      {"oversized_dim", npy_bytes(dict("<f4", "False", "(99999999999999999999, 2)"), floats(4)),
       "dimension too large"},
      {"int64_max_dim", npy_bytes(dict("<f4", "False", "(9223372036854775807,)"), floats(4)),
       "truncated npy data"},
      {"larger_than_file", npy_bytes(dict("<f4", "False", "(1000, 1000)"), floats(4)),
       "truncated npy data"},
      {"product_overflows", npy_bytes(dict("<f4", "False", "(4294967296, 4294967296, 2)"), ""),
       "more than 2^63 elements"},
      {"overflow_with_zero_dim", npy_bytes(dict("<f4", "False", "(4611686018427387904, 4, 0)"), ""),
       "more than 2^63 elements"},
      {"bytes_overflow", npy_bytes(dict("<i8", "False", "(4611686018427387904,)"), ""),
       "truncated npy data"},
      {"garbled_shape", npy_bytes(dict("<f4", "False", "(3, x, 4)"), floats(12)),
       "garbled npy shape '(3, x, 4)'"},
      {"negative_dim", npy_bytes(dict("<f4", "False", "(-1, 4)"), floats(4)), "negative dimension"},
      {"shape_not_tuple", npy_bytes(dict("<f4", "False", "[3, 4]"), floats(12)),
       "garbled npy shape"},
      {"shape_unclosed", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4", ""),
       "garbled npy shape"},
      {"shape_double_comma", npy_bytes(dict("<f4", "False", "(3,, 4)"), floats(12)),
       "garbled npy shape"},
      {"shape_float", npy_bytes(dict("<f4", "False", "(3.5, 4)"), floats(12)), "garbled npy shape"},
      {"trailing_bytes", good + "xyz", "3 trailing bytes"},
      {"truncated_data", good.substr(0, good.size() - 5), "truncated npy data"},
      {"truncated_header", good.substr(0, 40), "truncated npy header"},
      {"truncated_length", good.substr(0, 9), "truncated npy header"},
      {"only_magic", good.substr(0, 6), "bad magic"},
      {"empty", "", "bad magic"},
      {"bad_magic", "\x93NUMPZ" + good.substr(6), "bad magic"},
      {"text", "hello world, not numpy at all", "bad magic"},
      {"version_4", "\x93NUMPY\x04" + good.substr(7), "unsupported npy format version 4"},
      {"header_len_implausible", std::string("\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12) + "{}",
       "implausible"},
      {"complex_dtype", npy_bytes(dict("<c8", "False", "(3,)"), floats(6)),
       "unsupported npy dtype '<c8'"},
      {"big_endian", npy_bytes(dict(">f4", "False", "(3,)"), floats(3)),
       "unsupported npy dtype '>f4'"},
      {"structured_dtype",
       npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", floats(3)),
       "structured"},
      {"fortran_order", npy_bytes(dict("<f4", "True", "(2, 2)"), floats(4)), "Fortran-ordered"},
      {"order_not_bool", npy_bytes(dict("<f4", "0", "(2, 2)"), floats(4)), "True or False"},
      {"no_shape", npy_bytes("{'descr': '<f4', 'fortran_order': False, }", floats(1)),
       "no 'shape'"},
      {"no_descr", npy_bytes("{'fortran_order': False, 'shape': (1,), }", floats(1)), "no 'descr'"},
      {"no_order", npy_bytes("{'descr': '<f4', 'shape': (1,), }", floats(1)), "no 'fortran_order'"},
      {"repeated_shape",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'shape': (2,), }",
                 floats(1)),
       "repeats 'shape'"},
      {"unknown_key",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1, }",
                 floats(1)),
       "unexpected key 'extra'"},
      {"junk_after_dict", npy_bytes(dict("<f4", "False", "(1,)") + " junk", floats(1)),
       "malformed npy header"},
      {"unterminated_string", npy_bytes("{'descr", floats(1)), "unterminated string"},
      {"key_not_string", npy_bytes("{descr: '<f4'}", floats(1)), "malformed npy header"},
      {"not_a_dict", npy_bytes("descr <f4", floats(1)), "malformed npy header"},
      {"missing_colon", npy_bytes("{'descr' '<f4'}", floats(1)), "malformed npy header"},
  };
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(parse_npy_reads_valid_headers) {
  const auto a = parse_npy(npy_bytes(dict("<f4", "False", "(3, 4)"), floats(12)), "mem");
  BOOST_TEST(a.descr == "<f4");
  BOOST_TEST((a.shape == shape_t{3, 4}));
  BOOST_TEST(a.bytes.size() == 48u);
  // Version 2, keys in another order, double quotes, no trailing comma, Python 2 longs.
  const auto b =
      parse_npy(npy_bytes("{\"shape\": (2L, 3L), 'fortran_order': False, 'descr': '<i8'}",
                          std::string(48, 1), 2),
                "v2");
  BOOST_TEST((b.shape == shape_t{2, 3}));
  BOOST_TEST(b.descr == "<i8");
  // Scalars, one-element tuples, empty arrays (a zero dimension next to a large one).
  BOOST_TEST(parse_npy(npy_bytes(dict("<f4", "False", "()"), floats(1)), "s").shape.empty());
  BOOST_TEST(
      (parse_npy(npy_bytes(dict("<f4", "False", "(5,)"), floats(5)), "o").shape == shape_t{5}));
  const auto e = parse_npy(npy_bytes(dict("<f4", "False", "(0, 1000000000)"), ""), "e");
  BOOST_TEST((e.shape == shape_t{0, 1000000000}));
  BOOST_TEST(npy_to_tensor<float>(e, "e").size() == 0);
  BOOST_TEST(
      parse_npy(npy_bytes(dict("<b1", "False", "(2,)"), std::string("\1\0", 2)), "b").descr ==
      "|b1");
  // What save_npy writes parses back to the same values.
  const auto t = cbtest::random_tensor<float>({3, 5}, 3);
  const auto dir = cbtest::scratch_dir("npy_parse");
  const auto path = (dir / "t.npy").string();
  save_npy(path, t);
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  const auto back = npy_to_tensor<float>(parse_npy(bytes, path), path);
  BOOST_TEST(cbtest::compare(back, t).ok());
  BOOST_TEST(cbtest::compare(load_npy<float>(path), t).ok());
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(malformed_bytes_throw_format_error_naming_the_source) {
  for (const auto& c : bad_cases()) {
    BOOST_TEST_CONTEXT(c.name) {
      expect_format_error([&] { parse_npy(c.bytes, c.name + ".npy"); }, c.name + ".npy", c.needle);
    }
  }
}

BOOST_AUTO_TEST_CASE(malformed_files_throw_format_error_naming_the_file) {
  const auto dir = cbtest::scratch_dir("npy_malformed");
  for (const auto& c : bad_cases()) {
    const auto path = (dir / (c.name + ".npy")).string();
    std::ofstream(path, std::ios::binary) << c.bytes;
    BOOST_TEST_CONTEXT(c.name) {
      expect_format_error([&] { read_npy(path); }, path, c.needle);
      expect_format_error([&] { load_npy<float>(path); }, path, c.needle);
      expect_format_error([&] { load_npy<std::int64_t>(path, {3, 4}); }, path, c.needle);
    }
  }
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(unreadable_paths_throw_io_error) {
  const auto dir = cbtest::scratch_dir("npy_io");
  BOOST_CHECK_THROW(read_npy((dir / "missing.npy").string()), io_error);
  BOOST_CHECK_THROW(read_npy(dir.string()), io_error);  // a directory
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(npy_to_tensor_rejects_a_mismatched_array) {
  npy_array a;
  a.descr = "<f4";
  a.shape = {4};
  a.bytes.resize(8);  // two floats for four elements
  BOOST_CHECK_THROW(npy_to_tensor<float>(a, "handmade"), format_error);
  a.descr = "<x9";
  BOOST_CHECK_THROW(npy_to_tensor<float>(a, "handmade"), format_error);
}
