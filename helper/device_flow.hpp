// SPDX-License-Identifier: GPL-3.0-or-later
// The device authorization grant as a conversation (RFC 8628 §3.3–3.5): show the URI, the
// user code and a QR code in an echo-on "press Enter" prompt (sshd shows text only with a
// prompt); after Enter, poll no faster than `interval`, +5 s on slow_down, twice as long after
// each poll the IdP failed (three in a row end it), until approved, refused, expired, or the
// client's wait would run out — then prompt again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "conversation.hpp"
#include "oidc.hpp"

namespace cvat::helper {

struct DeviceFlowDeps {
    std::function<DevicePoll(const DeviceAuthorization&)> poll;  // one token request
    std::function<proto::Verdict(const OidcOutcome&)> approved;  // verdict for the user
    std::function<std::int64_t()> monotonic_ms;                  // time, for tests
    std::function<std::int64_t()> wall_s;
};

struct DeviceFlowOptions {
    std::string idp_name;          // shown to the user ("Company SSO")
    bool qr = true;                // no_qr clears it
    bool ascii_only = true;        // the conversation may not take UTF-8 (sshd)
    std::int64_t client_wait_ms = 10000;  // the client's per-step timeout
};

// The first prompt text for an authorization (exposed for tests).
std::string device_prompt_text(const DeviceAuthorization& auth, const DeviceFlowOptions& options);

class DeviceFlow : public Conversation {
public:
    DeviceFlow(DeviceAuthorization auth, DeviceFlowOptions options, DeviceFlowDeps deps);

    // The first step: the prompt with URI, code and QR code.
    proto::Prompt first_prompt();

    Step answer(const Secret& answer) override;
    Step wake() override;
    std::int64_t answer_deadline_ms() const override;

    int interval_s() const { return interval_s_; }  // grows by 5 on each slow_down

private:
    Step schedule_poll();                 // next poll, or a re-prompt if the client would time out
    Step reprompt(const std::string& why);
    Step end(proto::Status status, std::string message);

    DeviceAuthorization auth_;
    DeviceFlowOptions options_;
    DeviceFlowDeps deps_;
    int interval_s_;
    std::int64_t last_poll_ms_ = 0;       // 0: none yet
    std::int64_t reply_by_ms_ = 0;        // the client stops waiting for our answer at this time
    int transient_failures_ = 0;          // polls in a row the IdP failed (5xx, no answer)
};

}  // namespace cvat::helper
