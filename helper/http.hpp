// SPDX-License-Identifier: GPL-3.0-or-later
// HTTPS for the OIDC code: libcurl, one easy handle per request, TLS verification always on,
// every wait bounded, bodies capped, no redirects followed, no cookies kept.
#pragma once

#include <string>
#include <vector>

#include "result.hpp"
#include "secret.hpp"

namespace cvat::helper {

struct HttpOptions {
    std::string ca_file;            // empty: the system store
    int connect_timeout_ms = 3000;
    int timeout_ms = 10000;         // the whole request
    std::size_t max_body = 1 << 20; // a larger answer is refused (too_large)
};

struct HttpResponse {
    long status = 0;
    std::string content_type;
    std::string body;
};

// One form field. Secret values (passwords, client secrets, device codes) are encoded into a
// buffer that is wiped after the request.
struct FormField {
    std::string name;
    std::string value;        // non-secret
    const Secret* secret = nullptr;  // when set, used instead of `value`
};

struct BasicAuth {
    std::string user;          // client_id
    const Secret* password;    // client_secret (RFC 6749 §2.3.1: both form-urlencoded first)
};

// Connection failures, TLS failures and timeouts are `unavailable`; an over-size body is
// `too_large`. Any HTTP status is a success of the transport: the caller reads it.
[[nodiscard]] Result<HttpResponse> http_get(const std::string& url, const HttpOptions& options);
[[nodiscard]] Result<HttpResponse> http_post_form(const std::string& url,
                                                  const std::vector<FormField>& fields,
                                                  const BasicAuth* basic,
                                                  const HttpOptions& options);

}  // namespace cvat::helper
