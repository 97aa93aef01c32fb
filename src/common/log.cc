#include "common/log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace taproot {
namespace {

spdlog::logger& Logger() {
  // Asynchronous: request threads hand lines to one logging thread instead of contending for
  // stderr. A full queue blocks rather than drops (operational logs; audit is separate).
  static std::shared_ptr<spdlog::logger> logger = [] {
    spdlog::init_thread_pool(8192, 1);
    auto l = spdlog::create_async<spdlog::sinks::stderr_color_sink_mt>("taproot");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *logger;
}

}  // namespace

void SetLogLevel(LogLevel level) {
  static const spdlog::level::level_enum kMap[] = {spdlog::level::debug, spdlog::level::info,
                                                   spdlog::level::warn, spdlog::level::err,
                                                   spdlog::level::off};
  Logger().set_level(kMap[static_cast<int>(level)]);
}
bool LogEnabled(LogLevel level) {
  static const spdlog::level::level_enum kMap[] = {spdlog::level::debug, spdlog::level::info,
                                                   spdlog::level::warn, spdlog::level::err,
                                                   spdlog::level::off};
  return Logger().should_log(kMap[static_cast<int>(level)]);
}
void LogInfo(std::string_view msg) { Logger().info(msg); }
void LogWarn(std::string_view msg) { Logger().warn(msg); }
void LogError(std::string_view msg) { Logger().error(msg); }
void LogDebug(std::string_view msg) { Logger().debug(msg); }
void FlushLogs() { Logger().flush(); }

}  // namespace taproot
