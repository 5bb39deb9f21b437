// Reading and writing NumPy .npy files (format versions 1-3, little-endian, C order).
// Stored dtypes: float32 '<f4', float16 '<f2', int32 '<i4', int64 '<i8', bool '|b1'; float64 '<f8'
// is read (narrowed to the tensor's type) but never written.
// bfloat16 convention: NumPy has no bfloat16, so a bfloat16 tensor is stored as its raw bits in a
// uint16 array ('<u2'); reading '<u2' as a floating type means bfloat16 bits. tools/convert.py
// writes bfloat16 weights this way.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <regex>
#include <string>
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

}  // namespace detail

// Reads an .npy file without converting its data. Throws io_error / format_error naming the file.
inline npy_array read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io_error(path + ": cannot open for reading");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw format_error(path + ": not an .npy file (bad magic bytes)");
  const int major = static_cast<unsigned char>(magic[6]);
  std::uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!f.read(reinterpret_cast<char*>(b), 2)) throw format_error(path + ": truncated npy header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) throw format_error(path + ": truncated npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (std::uint32_t(b[3]) << 24);
  } else {
    throw format_error(path + ": unsupported npy format version " + std::to_string(major));
  }
  if (header_len > (1u << 20)) throw format_error(path + ": npy header length implausible");
  std::string header(header_len, '\0');
  if (!f.read(header.data(), header_len)) throw format_error(path + ": truncated npy header");

  npy_array a;
  static const std::regex descr_re(R"('descr'\s*:\s*'([^']*)')");
  static const std::regex order_re(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
  std::smatch m;
  if (!std::regex_search(header, m, descr_re))
    throw format_error(path + ": npy header has no 'descr'");
  a.descr = m[1];
  if (a.descr == "<b1") a.descr = "|b1";
  if (!std::regex_search(header, m, order_re))
    throw format_error(path + ": npy header has no 'fortran_order'");
  if (m[1] == "True") throw format_error(path + ": Fortran-ordered npy arrays are not supported");
  if (!std::regex_search(header, m, shape_re))
    throw format_error(path + ": npy header has no 'shape'");
  const std::string dims = m[1];
  static const std::regex int_re(R"(\s*(-?\d+)\s*(,|$))");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), int_re);
       it != std::sregex_iterator(); ++it) {
    const long long d = std::stoll((*it)[1]);
    if (d < 0) throw format_error(path + ": negative dimension in npy shape");
    a.shape.push_back(d);
  }
  const std::size_t item = detail::npy_item_size(a.descr, path);
  const std::size_t want = item * static_cast<std::size_t>(numel(a.shape));
  a.bytes.resize(want);
  if (want && !f.read(a.bytes.data(), static_cast<std::streamsize>(want)))
    throw format_error(path + ": truncated npy data: expected " + std::to_string(want) +
                       " bytes for shape " + to_string(a.shape) + ", got " +
                       std::to_string(f.gcount()));
  return a;
}

// Loads an .npy file into a CPU tensor of element type T, converting between float types
// (float32/float16/bfloat16) or between integer types. A float file cannot load as an integer
// tensor or vice versa.
template <class T>
tensor<T> load_npy(const std::string& path) {
  const npy_array a = read_npy(path);
  tensor<T> t(a.shape);
  const std::size_t n = static_cast<std::size_t>(t.size());
  const bool stored_float =
      a.descr == "<f4" || a.descr == "<f8" || a.descr == "<f2" || a.descr == "<u2";
  if (a.descr == detail::npy_descr<T>()) {  // stored exactly as T: one copy
    std::memcpy(t.data(), a.bytes.data(), sizeof(T) * n);
    return t;
  }
  if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, half> ||
                std::is_same_v<T, bfloat16>) {
    if (!stored_float)
      throw format_error(path + ": expected a floating-point array, got dtype '" + a.descr + "'");
    detail::convert_floats(a, t.data(), n);
  } else {
    if (stored_float)
      throw format_error(path + ": expected an integer or bool array, got dtype '" + a.descr + "'");
    for (std::size_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(detail::npy_int_at(a, i));
  }
  return t;
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
