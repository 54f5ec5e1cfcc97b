// SPDX-License-Identifier: GPL-3.0-or-later
// cvat-authd only: every heap block is wiped as it is freed (issue 6, secret hygiene).
//
// Our own secrets live in zeroing buffers (common/secret.hpp), but the libraries they pass
// through keep copies in their own heap memory and free it without wiping: liblber builds the
// bind request (the user's password in clear) in a BerElement, libcurl assembles request
// buffers, OpenSSL and the JSON parser copy token bytes. Freed memory keeps its bytes until
// reused, so a core, a swap page or a later heap overread would show them (test_secrets found
// both a user password and its BER bind request that way). liblber's own memory hooks apply
// only to allocations with a memory context, which libldap's client side never passes.
//
// So the daemon's executable interposes free() (and realloc(), whose moves free the old block
// inside libc): every caller in every library reaches these through the dynamic linker.
// glibc's allocator stays the allocator; its M_PERTURB option would not do, since blocks that
// go to the thread cache are never perturbed.
// Sanitizers bring their own allocator and intercept free() themselves; an interposed free()
// here would hand their blocks to glibc. Under them this file is empty (ASan keeps freed
// blocks in its quarantine; test_secrets does not scan an ASan daemon's core).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CVAT_WIPE_ON_FREE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define CVAT_WIPE_ON_FREE 0
#endif
#endif
#ifndef CVAT_WIPE_ON_FREE
#define CVAT_WIPE_ON_FREE 1
#endif

#if CVAT_WIPE_ON_FREE
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <malloc.h>
#include <string.h>

extern "C" {
void* __libc_malloc(std::size_t size);  // glibc's own, exported (GLIBC_2.2.5)
void __libc_free(void* p);

void free(void* p) noexcept {
    if (p == nullptr) return;
    explicit_bzero(p, malloc_usable_size(p));
    __libc_free(p);
}

void* realloc(void* p, std::size_t size) noexcept {
    if (p == nullptr) return __libc_malloc(size);
    if (size == 0) {
        free(p);
        return nullptr;
    }
    const std::size_t have = malloc_usable_size(p);
    if (size <= have) return p;  // fits: the tail is wiped with the block when it is freed
    void* q = __libc_malloc(size);
    if (q == nullptr) return nullptr;  // p stays valid, as realloc promises
    std::memcpy(q, p, have);
    free(p);
    return q;
}

void* reallocarray(void* p, std::size_t n, std::size_t size) noexcept {
    std::size_t total = 0;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return nullptr;
    }
    return realloc(p, total);
}
}
#endif  // CVAT_WIPE_ON_FREE
