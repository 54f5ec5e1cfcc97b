// SPDX-License-Identifier: LGPL-2.1-or-later
// Logging for the daemon and tools: syslog (the journal picks it up) or stderr in the
// foreground. Nothing passed here may hold a secret; outside strings go through log_safe().
#pragma once

#include <string>
#include <string_view>

namespace cvat::log {

enum class Level { error = 0, warning = 1, info = 2, debug = 3 };

// Parse "error", "warning", "info", "debug".
bool parse_level(std::string_view text, Level& out) noexcept;

// ident: syslog identity; to_stderr: write lines to stderr instead of syslog.
void init(const char* ident, bool to_stderr, Level level) noexcept;
void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;

void write(Level level, std::string_view message) noexcept;

template <typename... Parts>
void error(const Parts&... parts) { if (enabled(Level::error)) write(Level::error, (std::string() + ... + std::string(parts))); }
template <typename... Parts>
void warning(const Parts&... parts) { if (enabled(Level::warning)) write(Level::warning, (std::string() + ... + std::string(parts))); }
template <typename... Parts>
void info(const Parts&... parts) { if (enabled(Level::info)) write(Level::info, (std::string() + ... + std::string(parts))); }
template <typename... Parts>
void debug(const Parts&... parts) { if (enabled(Level::debug)) write(Level::debug, (std::string() + ... + std::string(parts))); }

}  // namespace cvat::log

namespace cvat {
// An outside string made safe for one log line: control bytes and non-ASCII become \xNN,
// long strings are cut at 128 bytes with a "...(N bytes)" suffix.
std::string log_safe(std::string_view text);
}  // namespace cvat
