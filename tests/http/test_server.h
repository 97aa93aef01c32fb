// Starts the real `taproot serve` binary on 127.0.0.1 with a random port and a temporary store,
// for HTTP integration tests. The process is killed (SIGKILL) or stopped (SIGTERM) on request
// and always reaped in the destructor.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace taproot::testing {

class TestServer {
 public:
  // `data_dir` empty: a fresh temporary directory, removed in the destructor. Unless `secure`,
  // the server runs with --insecure-dev: tests of everything but access control send no token.
  explicit TestServer(std::string data_dir = {}, std::vector<std::string> extra_args = {},
                      bool secure = false);
  ~TestServer();

  bool Start();  // waits until the port is known and /readyz answers
  // Waits only for the port (a TLS server's /readyz cannot be asked over plain HTTP).
  bool StartListening();
  void Signal(int sig);
  int Stop();   // SIGTERM and wait; returns the exit status
  void Kill();  // SIGKILL and wait
  int port() const { return port_; }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& data_dir() const { return data_dir_; }
  std::string log() const;  // what the server wrote to stderr
  // A token from `taproot token --data <data_dir> ARGS` (signed by this store's local key).
  std::string Token(const std::vector<std::string>& args) const;

 private:
  bool Launch(bool probe);

  std::string data_dir_;
  bool own_dir_ = false;
  std::vector<std::string> extra_args_;
  std::string port_file_, log_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace taproot::testing
