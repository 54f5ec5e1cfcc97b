// SPDX-License-Identifier: LGPL-2.1-or-later
#include "result.hpp"

namespace cvat {

const char* error_code_name(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::invalid_argument: return "invalid argument";
        case ErrorCode::config: return "configuration error";
        case ErrorCode::io: return "I/O error";
        case ErrorCode::timeout: return "timed out";
        case ErrorCode::protocol: return "protocol error";
        case ErrorCode::too_large: return "too large";
        case ErrorCode::unavailable: return "unavailable";
        case ErrorCode::auth_failed: return "authentication failed";
        case ErrorCode::user_unknown: return "unknown user";
        case ErrorCode::permission_denied: return "permission denied";
        case ErrorCode::account_expired: return "account expired";
        case ErrorCode::new_authtok_required: return "new password required";
        case ErrorCode::not_supported: return "not supported";
        case ErrorCode::internal: return "internal error";
    }
    return "unknown error";
}

}  // namespace cvat
