// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: what the daemon reads from an OpenID Connect IdP's HTTP answers
// (helper/oidc.hpp): the discovery document, the token endpoint's 200 answer, the device
// authorization answer, and error answers. Input: one selector byte, then the body:
//   'D' discovery   'T' token answer   'A' device authorization   'E' status:u16 then an error body
// Properties: a discovery document is taken only with our issuer, an https:// (or loopback
// http://) jwks_uri and endpoints, and allowed algorithms; a device answer only with
// printable codes, an http(s) verification URI and bounded interval and lifetime; an error
// answer never reads as success.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "fuzz_keys.hpp"
#include "jwt.hpp"
#include "oidc.hpp"

using namespace cvat;

namespace {

// An http(s) URL, the scheme in any case and however many slashes follow it (curl's URL
// parser takes HTTPS:/host as https://host/).
bool web_url(const std::string& u, bool allow_http) {
    std::string head = u.substr(0, 6);
    std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (head == "https:") return true;
    return allow_http && head.rfind("http:", 0) == 0;
}

bool printable(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

void discovery(std::string_view body) {
    std::vector<std::string> notes;
    auto d = helper::parse_discovery(body, fuzz::kIssuer, false, notes);
    if (!d) {
        FUZZ_CHECK(!d.error().detail.empty());
        return;
    }
    std::string iss = d->issuer;
    if (!iss.empty() && iss.back() == '/') iss.pop_back();
    FUZZ_CHECK(iss == fuzz::kIssuer);
    FUZZ_CHECK(!d->jwks_uri.empty() && web_url(d->jwks_uri, true));
    for (const auto* e : {&d->token_endpoint, &d->device_endpoint, &d->userinfo_endpoint})
        FUZZ_CHECK(e->empty() || web_url(*e, true));
    const auto& all = helper::jwt::default_algorithms();
    for (const auto& a : d->algorithms) FUZZ_CHECK(std::find(all.begin(), all.end(), a) != all.end());
}

void token(std::string_view body) {
    auto a = helper::parse_token_answer(body);
    if (a.problem == helper::TokenAnswer::Problem::none) FUZZ_CHECK(!a.id_token.empty());
    else FUZZ_CHECK(a.id_token.empty() && a.access_token.empty());
}

void device(std::string_view body) {
    constexpr std::int64_t now = fuzz::kNow;
    auto a = helper::parse_device_authorization(body, now);
    if (!a) {
        FUZZ_CHECK(!a.error().detail.empty());
        return;
    }
    FUZZ_CHECK(!a->device_code.empty() && a->device_code.size() <= 4096);
    FUZZ_CHECK(!a->user_code.empty() && a->user_code.size() <= 64 && printable(a->user_code));
    FUZZ_CHECK(web_url(a->verification_uri, true) && printable(a->verification_uri));
    FUZZ_CHECK(a->verification_uri_complete.empty() ||
               (web_url(a->verification_uri_complete, true) && printable(a->verification_uri_complete)));
    FUZZ_CHECK(a->interval_s >= 1 && a->interval_s <= 60);
    FUZZ_CHECK(a->expires_at > now && a->expires_at <= now + 3600);
}

void error_answer(long status, std::string_view body) {
    auto te = helper::classify_token_error(status, body);
    FUZZ_CHECK(te.status != proto::Status::ok && !te.message.empty());
    FUZZ_CHECK(te.poll != helper::DevicePollState::approved);
    FUZZ_CHECK(te.error.size() <= 64);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::string_view body = fuzz::as_text(data + 1, size - 1);
    switch (data[0]) {
        case 'D': discovery(body); break;
        case 'T': token(body); break;
        case 'A': device(body); break;
        case 'E':
            if (body.size() >= 2) {
                long status = static_cast<unsigned char>(body[0]) << 8 | static_cast<unsigned char>(body[1]);
                error_answer(status, body.substr(2));
            }
            break;
        default: break;
    }
    return 0;
}
