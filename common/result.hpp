// SPDX-License-Identifier: LGPL-2.1-or-later
// Errors are values: every fallible function returns Result<T>.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace cvat {

// Stable error classes; the daemon maps them to protocol statuses and PAM codes.
enum class ErrorCode {
    invalid_argument,   // caller gave something malformed (bad name, bad frame)
    config,             // configuration file refused
    io,                 // local I/O failure (socket, file)
    timeout,            // a bounded wait ran out
    protocol,           // peer sent a frame we refuse
    too_large,          // a length or count over its cap
    unavailable,        // backend (directory, IdP, daemon) unreachable
    auth_failed,        // wrong credentials
    user_unknown,       // no such user
    permission_denied,  // locked, disabled, role missing, peer not allowed
    account_expired,
    new_authtok_required,
    not_supported,
    internal,
};

const char* error_code_name(ErrorCode code) noexcept;

struct Error {
    ErrorCode code;
    std::string detail;
};

template <typename T>
using Result = tl::expected<T, Error>;

// Shorthand for `return fail(ErrorCode::io, "...")`. (cmocka.h defines a macro fail(): tests
// include tests/support/cmocka.hpp, which removes it.)
inline tl::unexpected<Error> fail(ErrorCode code, std::string detail) {
    return tl::unexpected<Error>(Error{code, std::move(detail)});
}

}  // namespace cvat
