// SPDX-License-Identifier: GPL-3.0-or-later
// HTTPS for the OIDC code: libcurl, one easy handle per request, TLS verification always on,
// every wait bounded, bodies capped, no redirects followed, no cookies kept.
//
// Secrets (client secret, password, device code, PKCE verifier) are encoded into buffers that
// are wiped after the request; the Authorization header too. libcurl itself keeps short-lived
// copies in its send buffer, which it frees without wiping: that is outside our reach, and
// the reason the daemon disables core dumps.
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
    // The answer holds secrets (a token response): it goes to HttpResponse::secret_body, a
    // buffer wiped on destruction, and `body` stays empty.
    bool sensitive = false;
};

struct HttpResponse {
    long status = 0;
    std::string content_type;
    std::string body;
    Secret secret_body;   // the body instead, when HttpOptions::sensitive

    // The body, wherever it was put.
    std::string_view text() const noexcept { return secret_body.empty() ? std::string_view(body) : secret_body.view(); }
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
// `too_large`. Any HTTP status is a success of the transport: the caller reads it. Details
// name the URL and what failed, never a field value.
[[nodiscard]] Result<HttpResponse> http_get(const std::string& url, const HttpOptions& options);
[[nodiscard]] Result<HttpResponse> http_post_form(const std::string& url,
                                                  const std::vector<FormField>& fields,
                                                  const BasicAuth* basic,
                                                  const HttpOptions& options);
// GET with "Authorization: Bearer <token>" (the userinfo endpoint); the header is wiped.
[[nodiscard]] Result<HttpResponse> http_get_bearer(const std::string& url, const Secret& token,
                                                   const HttpOptions& options);

// POST of a SOAP 1.1 envelope (SAML ECP, SAML 2.0 Bindings §3.2), with "Authorization: Basic
// base64(user:password)" sent up front (RFC 7617: the raw UTF-8 bytes, no form encoding; ECP
// IdPs do not answer with a 401 challenge) when `password` is set; the header is wiped.
// A user name holding ':' or a control byte is refused (invalid_argument).
[[nodiscard]] Result<HttpResponse> http_post_soap(const std::string& url, std::string_view envelope,
                                                  std::string_view user, const Secret* password,
                                                  const HttpOptions& options);

// The form encoding of one value (application/x-www-form-urlencoded as libcurl escapes it:
// every byte but ALPHA / DIGIT / - . _ ~ as %XX), appended to `out`.
void form_encode_append(std::string_view value, std::vector<char, ZeroingAllocator<char>>& out);

}  // namespace cvat::helper
