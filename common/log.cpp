// SPDX-License-Identifier: LGPL-2.1-or-later
#include "log.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <syslog.h>
#include <unistd.h>

namespace cvat::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<bool> g_stderr{true};
std::mutex g_mutex;  // keeps stderr lines whole across threads
const char* g_ident = "cvat-auth";

int syslog_priority(Level l) {
    switch (l) {
        case Level::error: return LOG_ERR;
        case Level::warning: return LOG_WARNING;
        case Level::info: return LOG_INFO;
        case Level::debug: return LOG_DEBUG;
    }
    return LOG_INFO;
}
const char* tag(Level l) {
    switch (l) {
        case Level::error: return "error";
        case Level::warning: return "warning";
        case Level::info: return "info";
        case Level::debug: return "debug";
    }
    return "?";
}
}  // namespace

bool parse_level(std::string_view text, Level& out) noexcept {
    for (auto l : {Level::error, Level::warning, Level::info, Level::debug}) {
        if (text == tag(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void init(const char* ident, bool to_stderr, Level level) noexcept {
    g_stderr = to_stderr;
    g_ident = ident;
    g_level = static_cast<int>(level);
    if (!to_stderr) openlog(ident, LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
}

void set_level(Level level) noexcept { g_level = static_cast<int>(level); }
bool enabled(Level level) noexcept { return static_cast<int>(level) <= g_level.load(); }

void write(Level level, std::string_view message) noexcept {
    if (!enabled(level)) return;
    if (g_stderr) {
        std::lock_guard lock(g_mutex);
        std::fprintf(stderr, "%s[%d] %s: %.*s\n", g_ident, static_cast<int>(getpid()), tag(level),
                     static_cast<int>(message.size()), message.data());
        std::fflush(stderr);
    } else {
        syslog(syslog_priority(level), "%.*s", static_cast<int>(message.size()), message.data());
    }
}

}  // namespace cvat::log
