// SPDX-License-Identifier: GPL-3.0-or-later
// A login that takes more than one round trip (the RFC 8628 device flow): the server keeps it
// on the client's connection between steps. While it waits — for the user to press Enter, or
// for the next poll — it holds no thread: only this object and a timer entry.
#pragma once

#include <cstdint>
#include <optional>

#include "protocol.hpp"
#include "secret.hpp"

namespace cvat::helper {

struct Step {
    // Send this now: a Prompt keeps the conversation going, anything else ends it.
    std::optional<proto::Response> reply;
    // With no reply: call wake() at this CLOCK_MONOTONIC millisecond.
    std::int64_t wake_at_ms = 0;
};

class Conversation {
public:
    virtual ~Conversation() = default;
    // The user answered the last Prompt (empty: Enter). Runs on a worker thread.
    virtual Step answer(const Secret& answer) = 0;
    // The time asked for by the last Step came. Runs on a worker thread.
    virtual Step wake() = 0;
    // How long the server may wait for the user's answer to the last Prompt (monotonic ms);
    // past it the connection is dropped.
    virtual std::int64_t answer_deadline_ms() const = 0;
};

}  // namespace cvat::helper
