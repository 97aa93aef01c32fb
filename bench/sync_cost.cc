// What one durable append costs on this machine's disk: appends 400-byte records to a
// preallocated file the two ways the audit log can (buffered with O_DSYNC, and O_DIRECT |
// O_DSYNC rewriting the last block), one synchronous write per record, and prints writes per
// second, wall time and CPU time (user + system, this process) per write. The CPU time is what
// each group commit takes from request threads on the same cores; see bench/RESULTS.md.
//   build/taproot_sync_bench [DIR] [writes]
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Returns false if the file cannot be opened that way (tmpfs refuses O_DIRECT).
bool Run(const std::string& path, bool direct, int writes) {
  constexpr size_t kRecord = 400, kBlock = 4096;
  {
    int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    std::string zeros(64 << 20, '\0');
    if (fd < 0 || write(fd, zeros.data(), zeros.size()) != static_cast<ssize_t>(zeros.size()) ||
        fsync(fd) != 0) {
      std::perror(path.c_str());
      std::exit(1);
    }
    close(fd);
  }
  int fd = open(path.c_str(), O_WRONLY | O_DSYNC | (direct ? O_DIRECT : 0));
  if (fd < 0) return false;
  char* buf = static_cast<char*>(std::aligned_alloc(kBlock, 4 * kBlock));
  std::memset(buf, 'x', 4 * kBlock);
  double cpu0 = CpuSeconds();
  auto t0 = std::chrono::steady_clock::now();
  off_t end = 0;
  for (int i = 0; i < writes && end + 2 * static_cast<off_t>(kBlock) < (64 << 20); ++i) {
    ssize_t n;
    if (direct) {
      off_t from = end / kBlock * kBlock;
      size_t len = (end + kRecord + kBlock - 1) / kBlock * kBlock - from;
      n = pwrite(fd, buf, len, from) == static_cast<ssize_t>(len) ? kRecord : -1;
    } else {
      n = pwrite(fd, buf, kRecord, end);
    }
    if (n != static_cast<ssize_t>(kRecord)) {
      std::perror("pwrite");
      std::exit(1);
    }
    end += kRecord;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = CpuSeconds() - cpu0;
  double done = static_cast<double>(end / kRecord);
  std::printf(
      "{\"write\":\"%s\",\"writes_per_second\":%.0f,\"wall_us_per_write\":%.1f,"
      "\"cpu_us_per_write\":%.1f}\n",
      direct ? "O_DIRECT|O_DSYNC" : "O_DSYNC", done / secs, 1e6 * secs / done, 1e6 * cpu / done);
  std::free(buf);
  close(fd);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : ".";
  int writes = argc > 2 ? std::atoi(argv[2]) : 20000;
  std::string path = dir + "/taproot-sync-bench.tmp";
  Run(path, false, writes);
  if (!Run(path, true, writes)) std::printf("{\"write\":\"O_DIRECT|O_DSYNC\",\"refused\":true}\n");
  unlink(path.c_str());
}
