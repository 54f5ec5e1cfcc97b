// SPDX-License-Identifier: LGPL-2.1-or-later
// Memory for passwords and tokens: wiped with explicit_bzero before it is freed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include <string.h>  // explicit_bzero

namespace cvat {

// Allocator that zeroes every block it frees, so growth and destruction leave no copy behind.
template <typename T>
struct ZeroingAllocator {
    using value_type = T;
    ZeroingAllocator() noexcept = default;
    template <typename U>
    ZeroingAllocator(const ZeroingAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept {
        explicit_bzero(p, n * sizeof(T));
        ::operator delete(p);
    }
    template <typename U>
    bool operator==(const ZeroingAllocator<U>&) const noexcept { return true; }
};

// Byte buffer for frames that may carry credentials.
using SecureBytes = std::vector<std::uint8_t, ZeroingAllocator<std::uint8_t>>;

// A password or token. Heap only (no short-string copy), NUL-terminated for C APIs,
// move-only so it is never duplicated by accident.
class Secret {
public:
    Secret() { buf_.push_back('\0'); }
    explicit Secret(std::string_view text) {
        buf_.reserve(text.size() + 1);
        buf_.assign(text.begin(), text.end());
        buf_.push_back('\0');
    }
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;
    Secret(Secret&& other) noexcept : buf_(std::move(other.buf_)) { other.reset(); }
    Secret& operator=(Secret&& other) noexcept {
        if (this != &other) {
            buf_ = std::move(other.buf_);
            other.reset();
        }
        return *this;
    }
    ~Secret() = default;  // the allocator wipes

    // Explicit copy, for the rare place that needs two (e.g. a retry).
    Secret clone() const { return Secret(view()); }

    const char* c_str() const noexcept { return buf_.data(); }
    std::size_t size() const noexcept { return buf_.size() - 1; }
    bool empty() const noexcept { return size() == 0; }
    std::string_view view() const noexcept { return {buf_.data(), size()}; }

    // Wipes the text now (clear() alone would leave it in the kept capacity until freed).
    void reset() {
        if (!buf_.empty()) explicit_bzero(buf_.data(), buf_.size());  // moved-from: no buffer
        buf_.clear();
        buf_.push_back('\0');
    }

private:
    std::vector<char, ZeroingAllocator<char>> buf_;
};

// Wipe a C buffer (e.g. one libpam or getpass handed us) before releasing it.
inline void wipe(void* p, std::size_t n) noexcept {
    if (p != nullptr) explicit_bzero(p, n);
}

}  // namespace cvat
