// Minimal .npy reader for oat_edge_run: little-endian float32/float64, C order, any shape.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace oat_edge_tools {

struct NpyArray {
  std::vector<size_t> shape;
  std::vector<float> data;  // converted to float32
};

inline NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + " is not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  f.read(header.data(), hlen);
  auto value_of = [&](const std::string& key) {
    auto p = header.find("'" + key + "'");
    if (p == std::string::npos) throw std::runtime_error(path + ": npy header lacks " + key);
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = value_of("descr");
  bool f8 = descr.find("<f8") != std::string::npos, f4 = descr.find("<f4") != std::string::npos;
  if (!f4 && !f8)
    throw std::runtime_error(path + ": expected dtype float32 or float64 (<f4/<f8), got " + descr.substr(0, 10));
  if (value_of("fortran_order").find("True") < value_of("fortran_order").find(','))
    throw std::runtime_error(path + ": Fortran-order arrays are not supported; save with np.ascontiguousarray");
  std::string shp = value_of("shape");
  shp = shp.substr(shp.find('(') + 1, shp.find(')') - shp.find('(') - 1);
  NpyArray a;
  size_t n = 1, pos = 0;
  while (pos < shp.size()) {
    size_t next = shp.find(',', pos);
    std::string tok = shp.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) {
      a.shape.push_back(std::stoul(tok));
      n *= a.shape.back();
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  a.data.resize(n);
  if (f4) {
    f.read(reinterpret_cast<char*>(a.data.data()), n * 4);
  } else {
    std::vector<double> d(n);
    f.read(reinterpret_cast<char*>(d.data()), n * 8);
    for (size_t i = 0; i < n; ++i) a.data[i] = static_cast<float>(d[i]);
  }
  if (!f) throw std::runtime_error(path + ": file is shorter than its header says");
  return a;
}

}  // namespace oat_edge_tools
