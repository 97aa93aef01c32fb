// Reading whole files. Returns empty on any error (callers say what they could not read).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace taproot {

inline std::string ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace taproot
