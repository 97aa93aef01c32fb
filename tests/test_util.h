// Small helpers shared by the tests.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/files.h"

namespace taproot::testing {

inline std::string ReadFileText(const std::filesystem::path& path) {
  return taproot::ReadFileText(path.string());
}

struct CommandOutput {
  int exit_code = -1;
  std::string text;  // stdout and stderr
};

// Runs a shell command and captures its output and exit code.
inline CommandOutput RunCommand(const std::string& command) {
  CommandOutput out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.text.append(buf, n);
  int status = pclose(p);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace taproot::testing
