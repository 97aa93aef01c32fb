// libFuzzer: the audit log's readers. The input is read as an audit log file (by Verify, which
// `taproot audit verify` runs on a file anyone with disk access may have edited, and by Head,
// which reads its end) and as one record's body (DecodeEntry, which the index catch-up and
// searches run on every line). None may crash, hang or leak; a decoded body must encode again.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "audit/audit_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir =
      (std::filesystem::temp_directory_path() / ("taproot-fuzz-audit-" + std::to_string(getpid())))
          .string();
  static bool made = std::filesystem::create_directories(dir) || true;
  (void)made;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(dir + "/audit.log", std::ios::binary | std::ios::trunc);
    out.write(input.data(), static_cast<std::streamsize>(input.size()));
  }
  auto report = taproot::audit::AuditLog::Verify(dir);
  if (report.ok() && report->ok && report->records < 0) __builtin_trap();
  (void)taproot::audit::AuditLog::Head(dir);
  auto entry = taproot::audit::DecodeEntry(input);
  if (entry.ok()) {
    auto again = taproot::audit::DecodeEntry(taproot::audit::EncodeEntry(*entry));
    if (!again.ok()) __builtin_trap();
  }
  return 0;
}
