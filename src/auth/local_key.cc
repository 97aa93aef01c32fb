#include "auth/local_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/files.h"

namespace taproot::auth {

Result<Jwk> LoadOrCreateLocalKey(const std::string& data_dir) {
  std::string dir = data_dir + "/keys";
  std::string path = dir + "/local-signing-key.pem";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create " + dir + ": " + ec.message());
  chmod(dir.c_str(), 0700);
  if (!std::filesystem::exists(path)) {
    ASSIGN_OR_RETURN(Jwk key, Jwk::GenerateP256());
    ASSIGN_OR_RETURN(std::string pem, key.PrivatePem());
    std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return Status::Unavailable("cannot write " + tmp);
    bool ok =
        write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()) && fsync(fd) == 0;
    close(fd);
    // link() fails if another process made the key meanwhile; both then use that one.
    if (!ok || (link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST)) {
      unlink(tmp.c_str());
      return Status::Unavailable("cannot write " + path);
    }
    unlink(tmp.c_str());
  }
  ASSIGN_OR_RETURN(Jwk key, Jwk::FromPem(ReadFileText(path)));
  if (key.kty() != "EC") return Status::Invalid(path + " is not a P-256 key");
  key.set_alg(Alg::kES256);
  return key;
}

}  // namespace taproot::auth
