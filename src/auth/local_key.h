// The store's own signing key, for deployments without an identity provider: `taproot token`
// signs with it and `taproot serve` trusts tokens it signed (issuer kLocalIssuer). Kept as a
// PKCS#8 PEM file, readable by its owner only, in DIR/keys/; made on first use. Never in the
// repository: every data directory gets its own.
#pragma once

#include <string>

#include "auth/jose.h"

namespace taproot::auth {

inline constexpr const char* kLocalIssuer = "urn:taproot:local";
inline constexpr const char* kLocalAudience = "urn:taproot:fhir";

// Loads DIR/keys/local-signing-key.pem, creating it (and the directory) if missing.
Result<Jwk> LoadOrCreateLocalKey(const std::string& data_dir);

}  // namespace taproot::auth
