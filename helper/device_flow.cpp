// SPDX-License-Identifier: GPL-3.0-or-later
#include "device_flow.hpp"

#include <algorithm>

#include "qr.hpp"

namespace cvat::helper {
namespace {

// Answer the client this long before its own timeout, so a re-prompt always arrives in time.
constexpr std::int64_t kReplyMarginMs = 1500;
// RFC 8628 §3.5: slow_down adds 5 seconds to the interval, for this and all later polls.
constexpr int kSlowDownStepS = 5;
// An IdP that fails a poll (HTTP 5xx, no answer) may be busy for a moment: the flow waits twice
// as long after each such failure (RFC 8628 §3.5's backoff) and gives up after this many in a
// row, rather than losing a sign-in the user may already have approved.
constexpr int kMaxTransientFailures = 3;
// A user who reads the prompt and signs in at the IdP on a phone: generous, but bounded by
// the code's own expiry, whichever comes first.
constexpr std::int64_t kMaxAnswerWaitMs = 15 * 60 * 1000;

}  // namespace

std::string device_prompt_text(const DeviceAuthorization& auth, const DeviceFlowOptions& options) {
    std::string text;
    text += "To sign in";
    if (!options.idp_name.empty()) text += " with " + options.idp_name;
    text += ", open\n  " + auth.verification_uri + "\nand enter the code\n  " + auth.user_code + "\n";
    if (!auth.verification_uri_complete.empty()) {
        if (options.qr) {
            auto qr = render_qr(auth.verification_uri_complete,
                                options.ascii_only ? QrStyle::ascii : QrStyle::half_blocks);
            if (qr) text += "or scan this QR code:\n" + *qr;
        }
        text += "or open directly:\n  " + auth.verification_uri_complete + "\n";
    }
    text += "Press Enter when you have signed in: ";
    return text;
}

DeviceFlow::DeviceFlow(DeviceAuthorization auth, DeviceFlowOptions options, DeviceFlowDeps deps)
    : auth_(std::move(auth)), options_(std::move(options)), deps_(std::move(deps)),
      interval_s_(std::clamp(auth_.interval_s, 1, 60)) {}

proto::Prompt DeviceFlow::first_prompt() {
    return proto::Prompt{proto::PromptStyle::echo_on, device_prompt_text(auth_, options_)};
}

std::int64_t DeviceFlow::answer_deadline_ms() const {
    std::int64_t left_s = auth_.expires_at - deps_.wall_s();
    std::int64_t by_expiry = deps_.monotonic_ms() + std::max<std::int64_t>(left_s, 0) * 1000;
    return std::min(by_expiry, deps_.monotonic_ms() + kMaxAnswerWaitMs);
}

Step DeviceFlow::end(proto::Status status, std::string message) {
    proto::Verdict v;
    v.status = status;
    v.message = std::move(message);
    return Step{proto::Response(std::move(v)), 0};
}

Step DeviceFlow::reprompt(const std::string& why) {
    proto::Prompt p{proto::PromptStyle::echo_on,
                    why + "\nOpen " + auth_.verification_uri + " and enter the code " + auth_.user_code +
                        "\nPress Enter when you have signed in: "};
    return Step{proto::Response(std::move(p)), 0};
}

Step DeviceFlow::answer(const Secret&) {
    reply_by_ms_ = deps_.monotonic_ms() + options_.client_wait_ms - kReplyMarginMs;
    return schedule_poll();
}

Step DeviceFlow::schedule_poll() {
    if (deps_.wall_s() >= auth_.expires_at)
        return end(proto::Status::auth_err, "The sign-in code expired before it was used. Please try again.");
    std::int64_t now = deps_.monotonic_ms();
    const std::int64_t wait_ms = std::int64_t{interval_s_} * 1000 << transient_failures_;
    std::int64_t at = last_poll_ms_ == 0 ? now : std::max<std::int64_t>(now, last_poll_ms_ + wait_ms);
    if (at > reply_by_ms_)
        return reprompt("You have not finished signing in yet.");
    return Step{std::nullopt, at};
}

Step DeviceFlow::wake() {
    last_poll_ms_ = deps_.monotonic_ms();
    DevicePoll p = deps_.poll(auth_);
    switch (p.state) {
        case DevicePollState::approved:
            return Step{proto::Response(deps_.approved(p.outcome)), 0};
        case DevicePollState::slow_down:
            transient_failures_ = 0;
            interval_s_ += kSlowDownStepS;
            return schedule_poll();
        case DevicePollState::pending:
            transient_failures_ = 0;
            return schedule_poll();
        case DevicePollState::denied:
            return end(proto::Status::auth_err, "The sign-in was refused at the identity provider.");
        case DevicePollState::expired:
            return end(proto::Status::auth_err, "The sign-in code expired before it was used. Please try again.");
        case DevicePollState::failed:
            if (p.outcome.status == proto::Status::unavailable && ++transient_failures_ < kMaxTransientFailures)
                return schedule_poll();
            break;
    }
    proto::Status s = p.outcome.status == proto::Status::ok ? proto::Status::internal : p.outcome.status;
    return end(s, p.outcome.message.empty() ? std::string("The sign-in failed.") : p.outcome.message);
}

}  // namespace cvat::helper
