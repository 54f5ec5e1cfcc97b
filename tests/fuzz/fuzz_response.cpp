// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the decoder of daemon replies (proto::decode_response), as pam_cvat and
// cvat-authctl call it on each frame body. A body that decodes must encode back to the same
// bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz.hpp"
#include "protocol.hpp"

using namespace cvat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto msg = proto::decode_response(std::span<const std::uint8_t>(data, size));
    if (!msg) {
        FUZZ_CHECK(!msg.error().detail.empty());
        return 0;
    }
    auto again = proto::encode_response(*msg);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(again->size() == size + proto::kHeaderSize);
    FUZZ_CHECK(std::equal(again->begin() + proto::kHeaderSize, again->end(), data));
    if (const auto* v = std::get_if<proto::Verdict>(&*msg)) {
        (void)v->attribute("idp");
        FUZZ_CHECK(proto::status_name(v->status)[0] != '?' && proto::role_name(v->role)[0] != '?');
    }
    return 0;
}
