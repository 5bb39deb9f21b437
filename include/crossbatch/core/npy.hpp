// Reading and writing NumPy .npy files (format versions 1-3, little-endian, C order).
// Stored dtypes: float32 '<f4', float16 '<f2', int32 '<i4', int64 '<i8', bool '|b1'; float64 '<f8'
// is read (narrowed to the tensor's type) but never written.
// bfloat16 convention: NumPy has no bfloat16, so a bfloat16 tensor is stored as its raw bits in a
// uint16 array ('<u2'); reading '<u2' as a floating type means bfloat16 bits. tools/convert.py
// writes bfloat16 weights this way.
// Malformed input of any kind (bad magic, truncated or garbled header, unsupported dtype or
// version, Fortran order, a shape whose byte size differs from the data, trailing bytes) throws
// format_error naming the file; nothing is allocated for the data before the shape matches the
// file size. parse_npy reads from memory (fuzz/fuzz_npy.cpp drives it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "crossbatch/core/dtype.hpp"
#include "crossbatch/core/error.hpp"
#include "crossbatch/core/tensor.hpp"

namespace crossbatch {

// The raw contents of an .npy file: its dtype string, shape and data bytes.
struct npy_array {
  std::string descr;  // e.g. "<f4"
  shape_t shape;
  std::vector<char> bytes;
};

namespace detail {

inline std::size_t npy_item_size(const std::string& descr, const std::string& path) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f2" || descr == "<u2") return 2;
  if (descr == "<i8" || descr == "<f8") return 8;
  if (descr == "|b1" || descr == "|u1" || descr == "|i1") return 1;
  throw format_error(path + ": unsupported npy dtype '" + descr +
                     "' (supported: <f4 <f8 <f2 <u2(bfloat16 bits) <i4 <i8 |b1)");
}

template <class T>
constexpr const char* npy_descr() {
  if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else if constexpr (std::is_same_v<T, half>)
    return "<f2";
  else if constexpr (std::is_same_v<T, bfloat16>)
    return "<u2";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "<i4";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "<i8";
  else if constexpr (std::is_same_v<T, bool>)
    return "|b1";
  else
    static_assert(sizeof(T) == 0, "no npy dtype for this element type");
}

// Converts every element of a floating-point array to T, choosing the source type once.
template <class T, class S>
void convert_from(const char* src, T* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, src + sizeof(S) * i, sizeof(S));
    dst[i] = static_cast<T>(static_cast<float>(v));
  }
}
template <class T>
void convert_floats(const npy_array& a, T* dst, std::size_t n) {
  const char* p = a.bytes.data();
  if (a.descr == "<f4")
    convert_from<T, float>(p, dst, n);
  else if (a.descr == "<f8")
    convert_from<T, double>(p, dst, n);
  else if (a.descr == "<f2")
    convert_from<T, half>(p, dst, n);
  else
    convert_from<T, bfloat16>(p, dst, n);  // "<u2": bfloat16 bits
}

inline std::int64_t npy_int_at(const npy_array& a, std::size_t i) {
  const char* p = a.bytes.data();
  if (a.descr == "<i4") {
    std::int32_t v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
  if (a.descr == "<i8") {
    std::int64_t v;
    std::memcpy(&v, p + 8 * i, 8);
    return v;
  }
  if (a.descr == "|i1") return static_cast<std::int8_t>(p[i]);
  return static_cast<std::uint8_t>(p[i]);  // |b1, |u1
}

// What the header of an .npy file says, checked against the size of the whole file.
struct npy_header {
  std::string descr;
  shape_t shape;
  std::size_t data_offset = 0;  // bytes before the data (magic, version, length, header)
  std::size_t data_bytes = 0;   // item size x number of elements
};

// A recursive-descent parser of the header's Python dict literal, e.g.
// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" + spaces + "\n".
// No regex (std::regex recurses per character and can exhaust the stack on long input).
class npy_header_parser {
 public:
  npy_header_parser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  void parse(npy_header& h) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{', "the header dict");
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal("a key");
      skip_space();
      expect(':', "':' after '" + key + "'");
      skip_space();
      if (key == "descr") {
        if (have_descr) fail("npy header repeats 'descr'");
        if (peek() != '\'' && peek() != '"')
          fail("unsupported npy dtype (structured or not a string): 'descr' must be a string");
        h.descr = string_literal("the 'descr' value");
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) fail("npy header repeats 'fortran_order'");
        const bool fortran = boolean();
        if (fortran) fail("Fortran-ordered npy arrays are not supported (fortran_order True)");
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) fail("npy header repeats 'shape'");
        h.shape = shape();
        have_shape = true;
      } else {
        fail("npy header has an unexpected key '" + printable(key) + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') fail_at("',' or '}' after the value of '" + key + "'");
    }
    ++i_;  // '}'
    skip_space();
    if (i_ != s_.size()) fail_at("the end of the header after '}'");
    if (!have_descr) fail("npy header has no 'descr'");
    if (!have_order) fail("npy header has no 'fortran_order'");
    if (!have_shape) fail("npy header has no 'shape'");
  }

 private:
  std::string_view s_;
  const std::string& name_;
  std::size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const { throw format_error(name_ + ": " + what); }
  [[noreturn]] void fail_at(const std::string& expected) const {
    fail("malformed npy header: expected " + expected + " at offset " + std::to_string(i_) +
         ", found " + (i_ < s_.size() ? "'" + printable(s_.substr(i_, 12)) + "'" : "the end"));
  }
  // At most 40 characters, non-printable bytes as '?'.
  static std::string printable(std::string_view t) {
    std::string out;
    for (char c : t.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c, const std::string& what) {
    if (peek() != c) fail_at(what);
    ++i_;
  }
  std::string string_literal(const std::string& what) {
    const char q = peek();
    if (q != '\'' && q != '"') fail_at(what + " (a quoted string)");
    const std::size_t end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos) fail("malformed npy header: unterminated string");
    std::string out(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.substr(i_, 4) == "True") return i_ += 4, true;
    if (s_.substr(i_, 5) == "False") return i_ += 5, false;
    fail_at("True or False for 'fortran_order'");
  }
  // The shape's text from `open` (to its ')' or 40 characters) in the error.
  [[noreturn]] void garbled(std::size_t open, const std::string& why) const {
    const std::size_t close = s_.find(')', open);
    const std::string text(
        s_.substr(open, close == std::string_view::npos ? 40 : close - open + 1));
    fail("garbled npy shape '" + printable(text) + "': " + why);
  }
  // "(" [dim ("," dim)* [","]] ")"; every dim a non-negative decimal integer that fits int64.
  shape_t shape() {
    const std::size_t open = i_;
    if (peek() != '(') garbled(open, "expected a tuple '(...)'");
    ++i_;
    shape_t dims;
    skip_space();
    while (peek() != ')') {
      if (peek() == '-') garbled(open, "negative dimension");
      if (peek() < '0' || peek() > '9') garbled(open, "expected a non-negative integer");
      std::uint64_t d = 0;
      while (peek() >= '0' && peek() <= '9') {
        const unsigned digit = unsigned(peek() - '0');
        if (d > (std::uint64_t(std::numeric_limits<index_t>::max()) - digit) / 10)
          garbled(open, "dimension too large (does not fit a 64-bit index)");
        d = d * 10 + digit;
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 long literal, as old NumPy wrote it
      dims.push_back(static_cast<index_t>(d));
      skip_space();
      if (peek() == ',') {
        ++i_;
        skip_space();
      } else if (peek() != ')') {
        garbled(open, "expected ',' or ')' after a dimension");
      }
    }
    ++i_;  // ')'
    return dims;
  }
};

// Parses and checks the magic, version, header and data size of an .npy file whose first
// `prefix.size()` bytes are given (at least the whole header when the file has one) and whose
// total size is `total`. Throws format_error naming `name`.
inline npy_header parse_npy_header(std::string_view prefix, std::size_t total,
                                   const std::string& name) {
  if (prefix.size() < 8 || std::memcmp(prefix.data(), "\x93NUMPY", 6) != 0)
    throw format_error(name + ": not an .npy file (bad magic bytes)");
  const int major = static_cast<unsigned char>(prefix[6]);
  std::size_t len_bytes = 0;
  if (major == 1)
    len_bytes = 2;
  else if (major == 2 || major == 3)
    len_bytes = 4;
  else
    throw format_error(name + ": unsupported npy format version " + std::to_string(major));
  if (prefix.size() < 8 + len_bytes)
    throw format_error(name + ": truncated npy header (file of " + std::to_string(total) +
                       " bytes)");
  std::uint64_t header_len = 0;
  for (std::size_t k = 0; k < len_bytes; ++k)
    header_len |= std::uint64_t(static_cast<unsigned char>(prefix[8 + k])) << (8 * k);
  if (header_len > (1u << 20))
    throw format_error(name + ": npy header length implausible (" + std::to_string(header_len) +
                       " bytes)");
  const std::size_t offset = 8 + len_bytes + static_cast<std::size_t>(header_len);
  if (offset > total || offset > prefix.size())
    throw format_error(name + ": truncated npy header: it claims " + std::to_string(header_len) +
                       " bytes, the file has " + std::to_string(total) + " in all");
  npy_header h;
  npy_header_parser(prefix.substr(8 + len_bytes, header_len), name).parse(h);
  if (h.descr == "<b1") h.descr = "|b1";
  const std::size_t item = npy_item_size(h.descr, name);
  // Number of elements without overflow. The product of the nonzero dimensions must fit int64
  // even when a zero dimension makes the array empty (numel and strides multiply them all).
  const std::uint64_t available = total - offset;
  std::uint64_t n = 1;
  bool overflow = false, empty = false;
  for (index_t d : h.shape) {
    if (d == 0) {
      empty = true;
      continue;
    }
    if (n > std::uint64_t(std::numeric_limits<index_t>::max()) / std::uint64_t(d)) {
      overflow = true;
      break;
    }
    n *= std::uint64_t(d);
  }
  if (empty && !overflow) n = 0;
  if (overflow || n > available / item)
    throw format_error(name + ": truncated npy data: shape " + to_string(h.shape) + " of '" +
                       h.descr + "' needs " +
                       (overflow ? std::string("more than 2^63 elements")
                                 : std::to_string(n) + " x " + std::to_string(item) + " bytes") +
                       ", the file holds " + std::to_string(available) + " after the header");
  h.data_offset = offset;
  h.data_bytes = static_cast<std::size_t>(n) * item;
  if (h.data_bytes != available)
    throw format_error(name + ": " + std::to_string(available - h.data_bytes) +
                       " trailing bytes after the npy data (shape " + to_string(h.shape) + " of '" +
                       h.descr + "' is " + std::to_string(h.data_bytes) + " bytes)");
  return h;
}

}  // namespace detail

// Parses the bytes of a whole .npy file held in memory, without converting its data; `name`
// (a path, or any label) names it in errors. Throws format_error on any malformed input: bad
// magic, unsupported version or dtype, truncated or garbled header, Fortran order, a shape whose
// size differs from the data (too large, overflowing, or with trailing bytes).
inline npy_array parse_npy(std::string_view bytes, const std::string& name) {
  const detail::npy_header h = detail::parse_npy_header(bytes, bytes.size(), name);
  npy_array a;
  a.descr = h.descr;
  a.shape = h.shape;
  a.bytes.assign(bytes.begin() + static_cast<std::ptrdiff_t>(h.data_offset), bytes.end());
  return a;
}

// Reads an .npy file without converting its data. Throws io_error / format_error naming the file;
// the checks are parse_npy's, and nothing is allocated before the header matches the file size.
inline npy_array read_npy(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw io_error(path + ": cannot open for reading");
  if (!std::filesystem::is_regular_file(st)) throw io_error(path + ": not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  f.seekg(0, std::ios::end);
  const std::streamoff end = f.tellg();
  f.seekg(0, std::ios::beg);
  if (end < 0 || !f) throw io_error(path + ": cannot determine the file size");
  const auto total = static_cast<std::size_t>(end);
  // Magic, version and header length first, then the header it announces (bounded by the file).
  std::string prefix(std::min<std::size_t>(total, 12), '\0');
  if (!f.read(prefix.data(), static_cast<std::streamsize>(prefix.size())))
    throw io_error(path + ": read failed");
  const int major = prefix.size() >= 8 ? static_cast<unsigned char>(prefix[6]) : 0;
  if (major >= 1 && major <= 3 && std::memcmp(prefix.data(), "\x93NUMPY", 6) == 0) {
    std::uint64_t len = 0;
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    if (prefix.size() >= 8 + len_bytes) {
      for (std::size_t k = 0; k < len_bytes; ++k)
        len |= std::uint64_t(static_cast<unsigned char>(prefix[8 + k])) << (8 * k);
      const std::uint64_t want = std::min<std::uint64_t>(8 + len_bytes + len, total);
      if (want > prefix.size() && len <= (1u << 20)) {
        const std::size_t have = prefix.size();
        prefix.resize(static_cast<std::size_t>(want));
        if (!f.read(prefix.data() + have, static_cast<std::streamsize>(want - have)))
          throw io_error(path + ": read failed");
      }
    }
  }
  const detail::npy_header h = detail::parse_npy_header(prefix, total, path);
  npy_array a;
  a.descr = h.descr;
  a.shape = h.shape;
  a.bytes.resize(h.data_bytes);
  f.seekg(static_cast<std::streamoff>(h.data_offset), std::ios::beg);
  if (h.data_bytes && !f.read(a.bytes.data(), static_cast<std::streamsize>(h.data_bytes)))
    throw io_error(path + ": read failed after " + std::to_string(f.gcount()) + " of " +
                   std::to_string(h.data_bytes) + " data bytes");
  return a;
}

// Converts the raw contents of an .npy file to a CPU tensor of element type T, converting
// between float types (float32/float16/bfloat16) or between integer types. A float array cannot
// convert to an integer tensor or vice versa (format_error naming `name`).
template <class T>
tensor<T> npy_to_tensor(const npy_array& a, const std::string& name) {
  tensor<T> t(a.shape);
  const std::size_t n = static_cast<std::size_t>(t.size());
  const bool stored_float =
      a.descr == "<f4" || a.descr == "<f8" || a.descr == "<f2" || a.descr == "<u2";
  require<format_error>(a.bytes.size() == n * detail::npy_item_size(a.descr, name),
                        name + ": npy data size does not match its shape");
  // Stored exactly as T: one copy. Not for bool: a '|b1' byte other than 0 or 1 is no valid bool
  // (the integer path below maps it to true).
  if (!std::is_same_v<T, bool> && a.descr == detail::npy_descr<T>()) {
    if (n) std::memcpy(t.data(), a.bytes.data(), sizeof(T) * n);
    return t;
  }
  if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, half> ||
                std::is_same_v<T, bfloat16>) {
    if (!stored_float)
      throw format_error(name + ": expected a floating-point array, got dtype '" + a.descr + "'");
    detail::convert_floats(a, t.data(), n);
  } else {
    if (stored_float)
      throw format_error(name + ": expected an integer or bool array, got dtype '" + a.descr + "'");
    for (std::size_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(detail::npy_int_at(a, i));
  }
  return t;
}

// Loads an .npy file into a CPU tensor of element type T (npy_to_tensor's conversions).
template <class T>
tensor<T> load_npy(const std::string& path) {
  return npy_to_tensor<T>(read_npy(path), path);
}

// Loads an .npy file and checks its shape; `what` names the tensor in the error.
template <class T>
tensor<T> load_npy(const std::string& path, const shape_t& expected) {
  tensor<T> t = load_npy<T>(path);
  if (t.shape() != expected)
    throw shape_error(path + ": expected shape " + to_string(expected) + ", got " +
                      to_string(t.shape()));
  return t;
}

// Writes a CPU tensor as .npy (version 1.0), in the dtype that stores T (bfloat16 as '<u2' bits).
template <class T>
void save_npy(const std::string& path, tensor_view<const T> v) {
  require<shape_error>(v.contiguous(), path + ": save_npy needs a contiguous view");
  std::string shape_str;  // "", "N," or "a, b, c" as Python writes tuples
  for (std::size_t i = 0; i < v.shape.size(); ++i)
    shape_str += (i ? ", " : "") + std::to_string(v.shape[i]);
  if (v.shape.size() == 1) shape_str += ",";
  std::string header = std::string("{'descr': '") + detail::npy_descr<T>() +
                       "', 'fortran_order': False, 'shape': (" + shape_str + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for writing");
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  const char lb[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(lb, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(v.data),
          static_cast<std::streamsize>(sizeof(T) * v.size()));
  if (!f) throw io_error(path + ": write failed");
}

template <class T>
void save_npy(const std::string& path, const tensor<T>& t) {
  save_npy<T>(path, t.view());
}

}  // namespace crossbatch
