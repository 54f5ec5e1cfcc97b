// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the config loader (helper/config.hpp load_config), from YAML parsing to the
// validation of every section. The input is the file's content, written to a memfd that the
// loader opens by its /proc/self/fd path (a regular file, as the loader requires). Secret
// files and ca_file paths are checked for form only (LoadOptions), so no other file is read.
// Properties: the loader never throws or crashes; a failure says why, each problem a line
// "PATH:LINE:COL: KEY: message"; warnings are prefixed the same way.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "config.hpp"
#include "fuzz.hpp"

using namespace cvat;

namespace {

int memfd() {
    static int fd = [] {
        int f = memfd_create("fuzz-config", MFD_CLOEXEC);
        FUZZ_CHECK(f >= 0);
        return f;
    }();
    return fd;
}

bool prefixed(std::string_view text, const std::string& path) {
    std::size_t at = 0;
    while (at <= text.size()) {
        std::size_t end = text.find('\n', at);
        std::string_view line = text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
        if (line.substr(0, path.size() + 1) != path + ":") return false;
        if (end == std::string_view::npos) break;
        at = end + 1;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 256 * 1024) return 0;
    int fd = memfd();
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    std::size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
        FUZZ_CHECK(w > 0);
        done += static_cast<std::size_t>(w);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    helper::LoadOptions options;
    options.check_permissions = false;
    options.read_secret_files = false;
    options.check_files = false;
    auto config = helper::load_config(path, options);
    if (config) {
        for (const auto& w : config->warnings) FUZZ_CHECK(prefixed(w, path));
    } else {
        FUZZ_CHECK(config.error().code == ErrorCode::config);
        FUZZ_CHECK(!config.error().detail.empty());
        FUZZ_CHECK(prefixed(config.error().detail, path));
    }
    return 0;
}
