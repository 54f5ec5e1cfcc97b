// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the SAML pieces that read a response before any signature is checked
// (helper/saml.hpp): looks_like_saml_response and saml_response_issuer on the password a
// user typed (base64), saml_precheck on decoded XML. Input: one selector byte, then the text:
//   'P' a password (base64 of a response)   'X' decoded XML, SHA-1 refused   'S' the same, SHA-1 allowed
// Properties: nothing throws or crashes (the functions are noexcept in spirit: the daemon
// calls them on anything typed at a login prompt); an XML that passes the precheck has no DTD.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz.hpp"
#include "saml.hpp"

using namespace cvat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::string_view text = fuzz::as_text(data + 1, size - 1);
    try {
        switch (data[0]) {
            case 'P': {
                bool looks = helper::looks_like_saml_response(text);
                std::string issuer = helper::saml_response_issuer(text);
                (void)looks;
                break;
            }
            case 'X':
            case 'S': {
                std::string why = helper::saml_precheck(text, data[0] == 'S');
                if (why.empty()) FUZZ_CHECK(text.find("<!DOCTYPE") == std::string_view::npos);
                break;
            }
            default: break;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "exception: %s\n", e.what());
        FUZZ_CHECK(!"a SAML pre-parser threw");
    }
    return 0;
}
