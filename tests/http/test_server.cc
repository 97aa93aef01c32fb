#include "test_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/ids.h"
#include "http/client.h"

namespace taproot::testing {

TestServer::TestServer(std::string data_dir, std::vector<std::string> extra_args, bool secure)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)) {
  if (!secure) extra_args_.push_back("--insecure-dev");
  std::string tag = NewUuid();
  if (data_dir_.empty()) {
    data_dir_ = (std::filesystem::temp_directory_path() / ("taproot-http-" + tag)).string();
    own_dir_ = true;
  }
  port_file_ = (std::filesystem::temp_directory_path() / ("taproot-port-" + tag)).string();
  log_file_ = (std::filesystem::temp_directory_path() / ("taproot-log-" + tag)).string();
}

TestServer::~TestServer() {
  Kill();
  std::filesystem::remove(port_file_);
  std::filesystem::remove(log_file_);
  if (own_dir_) std::filesystem::remove_all(data_dir_);
}

bool TestServer::StartListening() { return Launch(/*probe=*/false); }
bool TestServer::Start() { return Launch(/*probe=*/true); }

void TestServer::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool TestServer::Launch(bool probe) {
  std::filesystem::remove(port_file_);
  std::vector<std::string> args = {TAPROOT_BINARY, "serve",       "--data",      data_dir_,
                                   "--listen",     "127.0.0.1:0", "--port-file", port_file_};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream pf(port_file_);
    if (pf >> port_ && port_ > 0) {
      if (!probe) return true;
      http::Client client(base());
      auto r = client.Send("GET", "/readyz");
      if (r.ok() && r->status == 200) return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int TestServer::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void TestServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string TestServer::Token(const std::vector<std::string>& args) const {
  std::string cmd = std::string(TAPROOT_BINARY) + " token --data '" + data_dir_ + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string TestServer::log() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace taproot::testing
