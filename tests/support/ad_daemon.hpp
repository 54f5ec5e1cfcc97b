// SPDX-License-Identifier: GPL-3.0-or-later
// Small helpers shared by the hardening tests (test_abuse, test_secrets, test_timing): a
// cvat-authd configuration over the AD-shaped slapd fixture (plain ldap:// on loopback), the
// daemon's `rate_limit` status line, and its resident memory.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "fixture.hpp"
#include "protocol.hpp"
#include "transport.hpp"

namespace cvat::test {

// auth_config.yml: helper: (socket, debug log, no verdict cache, cache under DIR/cache, then
// `helper_extra` lines) and the ldap: section of CVAT's AD example over `ad`.
inline std::string ad_daemon_config(const std::string& dir, const Slapd& ad, const std::string& helper_extra) {
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    const std::string u = "CN=Users," + ad.base();
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "  verdict_ttl: 0\n"
           "  cache_dir: " + dir + "/cache\n" + helper_extra +
           "ldap:\n"
           "  server_uri: [" + ad.uri() + "]\n"
           "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  connect_timeout: 2\n"
           "  timeout: 5\n" +
           cvat_ad_example(u);
}

// The detail of the status reply's entry `name` (root's view), or "" when absent.
inline std::string status_detail(const std::string& socket, const std::string& name) {
    auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
    if (!fd) return "";
    auto r = proto::call(fd->get(), proto::StatusRequest{}, proto::Deadline::after_ms(30000));
    if (!r) return "";
    if (const auto* s = std::get_if<proto::StatusReply>(&*r))
        for (const auto& b : s->backends)
            if (b.name == name) return b.detail;
    return "";
}

// The absolute path of `program` on $PATH (run_program execs without a search), or `program`.
inline std::string on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    for (std::size_t from = 0; from <= dirs.size();) {
        std::size_t to = dirs.find(':', from);
        if (to == std::string::npos) to = dirs.size();
        std::string candidate = dirs.substr(from, to - from) + "/" + program;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        from = to + 1;
    }
    return program;
}

// VmRSS of `pid` in KiB (-1 if unreadable).
inline long vm_rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

}  // namespace cvat::test
