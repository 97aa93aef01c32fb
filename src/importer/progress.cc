#include "importer/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace taproot::importer {

Progress::Progress(std::string label, int64_t total_files, int64_t total_bytes, bool enabled,
                   std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_files_(total_files),
      total_bytes_(total_bytes),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

std::string Progress::Line(const std::string& label, int64_t files, int64_t total_files,
                           int64_t resources, int64_t failures, double seconds, double fraction,
                           int width, const std::string& unit) {
  double rate = seconds > 0 ? resources / seconds : 0;
  char eta[32] = "--";
  if (fraction > 0.01 && fraction < 1) {
    std::snprintf(eta, sizeof eta, "%.0fs", seconds / fraction - seconds);
  } else if (fraction >= 1) {
    std::snprintf(eta, sizeof eta, "0s");
  }
  char text[256];
  std::snprintf(text, sizeof text, " %3.0f%% %s %lld/%lld  %lld resources  %.0f/s  %s%s ETA %s",
                fraction * 100, unit.c_str(), static_cast<long long>(files),
                static_cast<long long>(total_files), static_cast<long long>(resources), rate,
                failures ? std::to_string(failures).c_str() : "", failures ? " failed " : "", eta);
  std::string out = label;
  int bar = width - static_cast<int>(out.size() + std::string(text).size()) - 3;
  if (bar >= 10) {
    int filled = static_cast<int>(fraction * bar);
    out += " [" + std::string(static_cast<size_t>(filled), '#') +
           std::string(static_cast<size_t>(bar - filled), '.') + "]";
  }
  return out + text;
}

void Progress::Add(int64_t files, int64_t bytes, int64_t resources, int64_t failures) {
  std::lock_guard lock(mu_);
  files_ += files;
  bytes_ += bytes;
  resources_ += resources;
  failures_ += failures;
  auto now = std::chrono::steady_clock::now();
  auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ >= interval) {
    last_draw_ = now;
    Draw(false);
  }
}

void Progress::Finish() {
  std::lock_guard lock(mu_);
  Draw(true);
}

void Progress::Draw(bool final) {
  if (!enabled_) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double fraction = total_bytes_ > 0 ? static_cast<double>(bytes_) / total_bytes_ : 1.0;
  int width = 100;
  if (tty_) {
    winsize ws{};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
  }
  std::string line = Line(label_, files_, total_files_, resources_, failures_, secs, fraction,
                          tty_ ? width - 1 : 0, unit_);
  if (tty_) {
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace taproot::importer
