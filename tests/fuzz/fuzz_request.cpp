// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the daemon's decoder of client frames (proto::decode_request), as
// server.cpp calls it on each frame body. A body that decodes must encode back to the very
// same bytes (the format has one spelling per message), and describe_request (the log line)
// must hold no secret.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <span>
#include <string>
#include <variant>

#include "fuzz.hpp"
#include "protocol.hpp"

using namespace cvat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> body(data, size);
    auto msg = proto::decode_request(body);
    if (!msg) {
        FUZZ_CHECK(!msg.error().detail.empty());
        return 0;
    }
    auto again = proto::encode_request(*msg);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(again->size() == size + proto::kHeaderSize);
    FUZZ_CHECK(std::equal(again->begin() + proto::kHeaderSize, again->end(), data));
    auto len = proto::frame_length(std::span<const std::uint8_t, proto::kHeaderSize>(again->data(), proto::kHeaderSize));
    FUZZ_CHECK(len.has_value() && *len == size);
    // The log line may say whether a credential was given, nothing more: the same line with
    // every credential replaced by another of the same emptiness.
    std::string line = proto::describe_request(*msg);
    FUZZ_CHECK(!line.empty());
    auto other = [](const Secret& s) { return Secret(s.empty() ? "" : "other-secret"); };
    proto::Request blind = proto::StatusRequest{};
    if (const auto* m = std::get_if<proto::AuthRequest>(&*msg)) {
        proto::AuthRequest c{m->user, other(m->password), m->service, m->rhost, m->tty, m->method, m->idp, m->flags, m->timeout_ms};
        blind = std::move(c);
    } else if (const auto* c = std::get_if<proto::ConvReply>(&*msg)) {
        blind = proto::ConvReply{other(c->answer)};
    } else if (const auto* p = std::get_if<proto::PasswordRequest>(&*msg)) {
        blind = proto::PasswordRequest{p->user, p->service, other(p->old_password), other(p->new_password)};
    }
    if (!std::holds_alternative<proto::StatusRequest>(blind)) FUZZ_CHECK(proto::describe_request(blind) == line);
    return 0;
}
