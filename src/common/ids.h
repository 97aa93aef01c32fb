// Identifiers the server makes: random UUIDs for server-assigned resource ids and request ids.
// Thread-safe (a thread-local generator seeded from std::random_device).
#pragma once

#include <string>

namespace taproot {

// A random (version 4) UUID in lower-case hex, 36 characters: a valid FHIR id.
std::string NewUuid();

}  // namespace taproot
