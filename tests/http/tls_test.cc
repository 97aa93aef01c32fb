// HTTPS on the listener: TLS 1.2 and 1.3 with certificates made at test time (a self-signed
// certificate for 127.0.0.1), HSTS, and a certificate renewed under a running server and
// picked up on SIGHUP. curl is the client (a real TLS stack, and the one operators use).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "auth/jose.h"
#include "auth/token.h"
#include "common/ids.h"
#include "common/json.h"
#include "test_server.h"

namespace taproot {
namespace {

// A self-signed certificate for IP 127.0.0.1 and its key, written as PEM files.
void MakeCertificate(const std::string& cert_path, const std::string& key_path,
                     const std::string& cn) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(key, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(std::rand()) + 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  X509_EXTENSION* bc =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE");
  X509_add_ext(x, bc, -1);
  X509_EXTENSION_free(bc);
  ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
  FILE* f = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
}

// curl's HTTP status, or its exit code negated when there was no HTTP exchange.
int Curl(const std::string& args, std::string* headers = nullptr) {
  std::string out = (std::filesystem::temp_directory_path() / ("curl-" + NewUuid())).string();
  std::string cmd = "curl -s -o /dev/null -D " + out + " -w '%{http_code}' " + args;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[64] = {0};
  size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  int rc = pclose(p);
  if (headers) {
    std::ifstream in(out);
    headers->assign(std::istreambuf_iterator<char>(in), {});
  }
  std::filesystem::remove(out);
  int code = std::atoi(std::string(buf, n).c_str());
  return code > 0 ? code : -WEXITSTATUS(rc);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / ("taproot-tls-" + NewUuid())).string();
    std::filesystem::create_directories(dir_);
    cert_ = dir_ + "/cert.pem";
    key_ = dir_ + "/key.pem";
    MakeCertificate(cert_, key_, "first");
    std::filesystem::copy_file(cert_, dir_ + "/first.pem");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, cert_, key_;
};

TEST_F(TlsTest, ServesTls12And13WithHstsAndReloadsOnSighup) {
  testing::TestServer server({}, {"--tls-cert", cert_, "--tls-key", key_});
  ASSERT_TRUE(server.StartListening()) << server.log();
  std::string url = "https://127.0.0.1:" + std::to_string(server.port());
  std::string headers;
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = Curl("--cacert " + dir_ + "/first.pem " + url + "/healthz", &headers);
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(status, 200) << server.log();
  EXPECT_NE(headers.find("Strict-Transport-Security"), std::string::npos);
  EXPECT_EQ(Curl("--tlsv1.2 --tls-max 1.2 --cacert " + dir_ + "/first.pem " + url + "/healthz"),
            200);
  EXPECT_EQ(Curl("--tlsv1.3 --cacert " + dir_ + "/first.pem " + url + "/fhir/metadata"), 200);
  // Plain HTTP on the TLS port gets no HTTP answer.
  EXPECT_LE(Curl("http://127.0.0.1:" + std::to_string(server.port()) + "/healthz"), 0);

  // Renew: new files in place, SIGHUP, and new connections present the new certificate.
  MakeCertificate(cert_, key_, "second");
  server.Signal(SIGHUP);
  int with_new = 0;
  for (int i = 0; i < 100 && with_new != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    with_new = Curl("--cacert " + cert_ + " " + url + "/healthz");
  }
  EXPECT_EQ(with_new, 200) << server.log();
  EXPECT_LT(Curl("--cacert " + dir_ + "/first.pem " + url + "/healthz"), 0);  // 60: not trusted
  EXPECT_NE(server.log().find("TLS certificate and key reloaded"), std::string::npos);

  // A broken renewal keeps the old certificate in service.
  { std::ofstream(key_, std::ios::trunc) << "not a key\n"; }
  server.Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Curl("--cacert " + cert_ + " " + url + "/healthz"), 200);
  EXPECT_NE(server.log().find("TLS reload failed"), std::string::npos);
}

TEST_F(TlsTest, RefusesToStartWithAKeyThatDoesNotMatch) {
  MakeCertificate(dir_ + "/other.pem", dir_ + "/other-key.pem", "other");
  testing::TestServer server({}, {"--tls-cert", cert_, "--tls-key", dir_ + "/other-key.pem"});
  EXPECT_FALSE(server.StartListening());
  std::string log = server.log();
  EXPECT_TRUE(log.find("does not match") != std::string::npos ||
              log.find("TLS key") != std::string::npos)
      << log;
}

}  // namespace
}  // namespace taproot

namespace taproot {
namespace {

// A JWKS published over HTTPS (here by a second Taproot server with TLS, whose own key signs
// the token): fetched with the certificate verified against a CA file, and refused when the
// certificate is not trusted.
TEST_F(TlsTest, JwksOverHttpsIsVerified) {
  testing::TestServer idp({}, {"--tls-cert", cert_, "--tls-key", key_});
  ASSERT_TRUE(idp.StartListening()) << idp.log();
  std::string url = "https://127.0.0.1:" + std::to_string(idp.port()) + "/.well-known/jwks.json";
  for (int i = 0; i < 100 && Curl("--cacert " + cert_ + " " + url) != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::ifstream pem_in(idp.data_dir() + "/keys/local-signing-key.pem");
  std::string pem((std::istreambuf_iterator<char>(pem_in)), {});
  auto key = auth::Jwk::FromPem(pem);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  int64_t now = std::time(nullptr);
  json::object claims{
      {"iss", "https://idp.test"}, {"sub", "u1"}, {"aud", "aud"}, {"exp", now + 600}};
  std::string token = *auth::SignJws(*key, auth::Alg::kES256, SerializeJson(claims));

  auth::IssuerConfig trusted;
  trusted.issuer = "https://idp.test";
  trusted.audiences = {"aud"};
  trusted.jwks_url = url;
  trusted.jwks_ca_file = cert_;
  auth::TokenVerifier verifier({trusted});
  ASSERT_TRUE(verifier.Init().ok());
  auto ok = verifier.Verify(token, now);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();

  auth::IssuerConfig untrusted = trusted;
  untrusted.jwks_ca_file.clear();  // the system's CAs do not know the test certificate
  auth::TokenVerifier refusing({untrusted});
  ASSERT_TRUE(refusing.Init().ok());
  EXPECT_FALSE(refusing.Verify(token, now).ok());
}

}  // namespace
}  // namespace taproot
