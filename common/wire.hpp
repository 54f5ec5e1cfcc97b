// SPDX-License-Identifier: LGPL-2.1-or-later
// Header-only, allocation-free big-endian reader and writer over caller-owned bytes, for code
// that must not use the C++ runtime (nss_cvat). The byte layout is protocol.hpp's: integers
// big-endian, strings len:u32 + bytes (no NUL), lists count:u32 + items.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cvat::wire {

// Writes into a fixed buffer. An overflow is remembered (ok() turns false), never written.
class Out {
public:
    Out(std::uint8_t* buf, std::size_t cap) noexcept : buf_(buf), cap_(cap) {}
    void u8(std::uint8_t v) noexcept { bytes(&v, 1); }
    void u16(std::uint16_t v) noexcept {
        std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
        bytes(b, 2);
    }
    void u32(std::uint32_t v) noexcept {
        std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                             static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
        bytes(b, 4);
    }
    void str(const char* s, std::size_t len) noexcept {
        if (len > UINT32_MAX) {
            ok_ = false;
            return;
        }
        u32(static_cast<std::uint32_t>(len));
        bytes(s, len);
    }
    // Overwrites 4 bytes at `at` (the frame's length word once the body is written).
    void patch_u32(std::size_t at, std::uint32_t v) noexcept {
        if (at + 4 > n_) {
            ok_ = false;
            return;
        }
        buf_[at] = static_cast<std::uint8_t>(v >> 24);
        buf_[at + 1] = static_cast<std::uint8_t>(v >> 16);
        buf_[at + 2] = static_cast<std::uint8_t>(v >> 8);
        buf_[at + 3] = static_cast<std::uint8_t>(v);
    }
    std::size_t size() const noexcept { return n_; }
    bool ok() const noexcept { return ok_; }

private:
    void bytes(const void* p, std::size_t len) noexcept {
        if (!ok_ || len > cap_ - n_) {
            ok_ = false;
            return;
        }
        if (len != 0) std::memcpy(buf_ + n_, p, len);
        n_ += len;
    }
    std::uint8_t* buf_;
    std::size_t cap_;
    std::size_t n_ = 0;
    bool ok_ = true;
};

// Reads from bytes it does not own. Every read checks the bytes that are really there; the
// first short or malformed read turns ok() false and every later read returns zeros.
class In {
public:
    In(const std::uint8_t* p, std::size_t n) noexcept : p_(p), n_(n) {}
    std::uint8_t u8() noexcept {
        const std::uint8_t* b = take(1);
        return b ? b[0] : 0;
    }
    std::uint16_t u16() noexcept {
        const std::uint8_t* b = take(2);
        return b ? static_cast<std::uint16_t>(b[0] << 8 | b[1]) : 0;
    }
    std::uint32_t u32() noexcept {
        const std::uint8_t* b = take(4);
        if (!b) return 0;
        return static_cast<std::uint32_t>(b[0]) << 24 | static_cast<std::uint32_t>(b[1]) << 16 |
               static_cast<std::uint32_t>(b[2]) << 8 | static_cast<std::uint32_t>(b[3]);
    }
    // A string of at most `cap` bytes without NUL; points into the input (not terminated).
    bool str(const char*& s, std::size_t& len, std::size_t cap) noexcept {
        std::uint32_t n = u32();
        if (!ok_ || n > cap) return bad();
        const std::uint8_t* b = take(n);
        if (!b || (n != 0 && std::memchr(b, 0, n) != nullptr)) return bad();
        s = reinterpret_cast<const char*>(b);
        len = n;
        return true;
    }
    std::size_t remaining() const noexcept { return ok_ ? n_ - pos_ : 0; }
    // True when every read succeeded and nothing is left over (protocol.hpp refuses trailing bytes).
    bool done() const noexcept { return ok_ && pos_ == n_; }
    bool ok() const noexcept { return ok_; }

private:
    bool bad() noexcept {
        ok_ = false;
        return false;
    }
    const std::uint8_t* take(std::size_t k) noexcept {
        if (!ok_ || k > n_ - pos_) {
            ok_ = false;
            return nullptr;
        }
        const std::uint8_t* b = p_ + pos_;
        pos_ += k;
        return b;
    }
    const std::uint8_t* p_;
    std::size_t n_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace cvat::wire
