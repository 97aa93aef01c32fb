// zstd compression of stored resource bodies and vendored definition files.
// Stateless functions; safe from any thread (each call uses its own thread-local context).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace taproot {

// Compresses with zstd at the given level (1 is fast and already shrinks FHIR JSON ~4x).
std::string ZstdCompress(std::string_view data, int level = 1);
// Decompresses a zstd frame; fails on a corrupt frame rather than returning garbage.
Result<std::string> ZstdDecompress(std::string_view data);

}  // namespace taproot
