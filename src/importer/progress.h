// A progress display for long-running commands (import, migrate, later export). On a
// terminal it redraws one line in place about ten times a second; otherwise it prints a plain
// line every few seconds so CI logs stay readable. Thread-safe: Update may be called from any
// thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace taproot::importer {

class Progress {
 public:
  // total_bytes drives the ETA; resources are counted as they complete. `unit` names what
  // total_files counts ("files", "batches").
  Progress(std::string label, int64_t total_files, int64_t total_bytes, bool enabled = true,
           std::string unit = "files");
  void Add(int64_t files, int64_t bytes, int64_t resources, int64_t failures);
  void Finish();

  // Formats the status line (exposed for tests).
  static std::string Line(const std::string& label, int64_t files, int64_t total_files,
                          int64_t resources, int64_t failures, double seconds, double fraction,
                          int width, const std::string& unit = "files");

 private:
  void Draw(bool final);

  std::string label_, unit_;
  int64_t total_files_, total_bytes_;
  int64_t files_ = 0, bytes_ = 0, resources_ = 0, failures_ = 0;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

}  // namespace taproot::importer
