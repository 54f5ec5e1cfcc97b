// SPDX-License-Identifier: GPL-3.0-or-later
// cmocka for C++ tests. cmocka.h 1.1.5 has no extern "C" and defines a function-like macro
// `fail()` that collides with cvat::fail(); include this header instead of <cmocka.h>, before
// or after the project's headers.
#pragma once

#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}
#undef fail
// cmocka's fail(), renamed.
#define cmocka_fail() _fail(__FILE__, __LINE__)
// fail_msg() called the removed fail(); the same macro on cmocka_fail().
#undef fail_msg
#define fail_msg(msg, ...)                              \
    do {                                                \
        print_error("ERROR: " msg "\n", ##__VA_ARGS__); \
        cmocka_fail();                                  \
    } while (0)
