// Logging: a thin layer over spdlog so that modules do not include spdlog headers.
// One structured line per event; never log patient data (bodies, names, identifiers).
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace taproot {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kOff };

void SetLogLevel(LogLevel level);
// True if a message at this level would be written (to skip formatting it otherwise).
bool LogEnabled(LogLevel level);
void LogInfo(std::string_view msg);
void LogWarn(std::string_view msg);
void LogError(std::string_view msg);
void LogDebug(std::string_view msg);
// Writes out queued lines; call before the process exits.
void FlushLogs();

}  // namespace taproot
