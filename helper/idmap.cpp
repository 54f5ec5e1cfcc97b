// SPDX-License-Identifier: GPL-3.0-or-later
#include "idmap.hpp"

#include <array>
#include <cinttypes>
#include <cstdio>

#include <openssl/evp.h>

namespace cvat::helper {

namespace {

// First 8 bytes of SHA-256(text), big-endian. A digest failure (not possible with the
// built-in SHA-256) yields 0, i.e. candidate `min`: still deterministic, never random.
std::uint64_t hash64(std::string_view text) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (EVP_Digest(text.data(), text.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len < 8)
        return 0;
    std::uint64_t h = 0;
    for (int i = 0; i < 8; ++i) h = (h << 8) | md[i];
    return h;
}

std::uint8_t byte_at(std::string_view b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }

std::uint32_t le32(std::string_view b, std::size_t at) {
    return static_cast<std::uint32_t>(byte_at(b, at)) | static_cast<std::uint32_t>(byte_at(b, at + 1)) << 8 |
           static_cast<std::uint32_t>(byte_at(b, at + 2)) << 16 |
           static_cast<std::uint32_t>(byte_at(b, at + 3)) << 24;
}

}  // namespace

std::uint32_t id_candidate(std::string_view immutable_id, unsigned k, IdRange range) {
    if (range.min > range.max) return range.min;
    std::uint64_t h;
    if (k == 0) {
        h = hash64(immutable_id);
    } else {
        std::string text(immutable_id);
        text += '#';
        text += std::to_string(k);
        h = hash64(text);
    }
    const std::uint64_t width = std::uint64_t{range.max} - range.min + 1;  // up to 2^32
    return static_cast<std::uint32_t>(range.min + h % width);
}

Result<std::string> sid_to_text(std::string_view b) {
    constexpr std::size_t kMaxSubAuthorities = 15;
    if (b.size() < 8) return fail(ErrorCode::invalid_argument, "objectSid shorter than 8 bytes");
    if (byte_at(b, 0) != 1) return fail(ErrorCode::invalid_argument, "objectSid revision is not 1");
    const std::size_t count = byte_at(b, 1);
    if (count > kMaxSubAuthorities)
        return fail(ErrorCode::invalid_argument, "objectSid has more than 15 sub-authorities");
    if (b.size() != 8 + 4 * count)
        return fail(ErrorCode::invalid_argument, "objectSid length does not match its sub-authority count");
    std::uint64_t authority = 0;
    for (std::size_t i = 2; i < 8; ++i) authority = (authority << 8) | byte_at(b, i);
    char buf[32];
    if (authority < (std::uint64_t{1} << 32))
        std::snprintf(buf, sizeof buf, "S-1-%" PRIu64, authority);
    else
        std::snprintf(buf, sizeof buf, "S-1-0x%012" PRIX64, authority);
    std::string out = buf;
    for (std::size_t i = 0; i < count; ++i) {
        out += '-';
        out += std::to_string(le32(b, 8 + 4 * i));
    }
    return out;
}

Result<std::string> guid_to_text(std::string_view b) {
    if (b.size() != 16) return fail(ErrorCode::invalid_argument, "objectGUID is not 16 bytes");
    // Data1..Data3 little-endian; Data4 (last 8 bytes) in order.
    static constexpr std::array<int, 16> kOrder = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (std::size_t i = 0; i < kOrder.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        const std::uint8_t v = byte_at(b, static_cast<std::size_t>(kOrder[i]));
        out += kHex[v >> 4];
        out += kHex[v & 0xf];
    }
    return out;
}

}  // namespace cvat::helper
