// SPDX-License-Identifier: LGPL-2.1-or-later
// Kept apart from log.cpp so the modules, which use it through protocol.cpp, link no logger state.
#include <algorithm>
#include <string>
#include <string_view>

#include "log.hpp"

namespace cvat {

std::string log_safe(std::string_view text) {
    constexpr std::size_t kMax = 128;  // one log line stays readable; the length is still told
    std::string out;
    out.reserve(std::min(text.size(), kMax) + 16);
    std::size_t n = std::min(text.size(), kMax);
    for (std::size_t i = 0; i < n; ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (text.size() > kMax) out += "...(" + std::to_string(text.size()) + " bytes)";
    return out;
}

}  // namespace cvat
