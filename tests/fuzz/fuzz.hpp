// SPDX-License-Identifier: GPL-3.0-or-later
// Shared by the fuzz targets: a failed property aborts with a message (libFuzzer then keeps
// the input as a crash; the corpus driver names the file).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);  \
            std::abort();                                                                      \
        }                                                                                      \
    } while (0)

namespace cvat::fuzz {

// Splits an input into parts at a separator line, so one input can carry several fields
// (e.g. a JWT and the JWKS to check it against). Missing parts are empty.
struct Parts {
    std::string_view data;
    std::string_view next(std::string_view sep) {
        auto at = data.find(sep);
        std::string_view part = data.substr(0, at);
        data = at == std::string_view::npos ? std::string_view() : data.substr(at + sep.size());
        return part;
    }
};

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace cvat::fuzz
