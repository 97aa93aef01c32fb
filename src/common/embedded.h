// Files compiled into the taproot binary (the vendored R4 definitions), so the server needs no
// data directory beside it. The bytes live in read-only memory for the life of the process.
#pragma once

#include <string_view>

namespace taproot {

// Returns the raw bytes of an embedded file ("r4/profiles-resources.json.zst"), or empty if
// there is no such file.
std::string_view EmbeddedFile(std::string_view name);

}  // namespace taproot
