// SPDX-License-Identifier: GPL-3.0-or-later
// The device-flow conversation (RFC 8628 §3.3–3.5) with a scripted IdP and a clock the test
// moves: the prompt, polling no faster than `interval`, slow_down adding 5 s, re-prompting
// before the client's wait runs out, and the words for each ending.
#include "cmocka.hpp"

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "device_flow.hpp"
#include "qr.hpp"

using namespace cvat;
using namespace cvat::helper;

namespace {

struct Script {
    std::int64_t mono_ms = 1'000'000;
    std::int64_t wall_s = 1'700'000'000;
    std::deque<DevicePollState> answers;
    std::vector<std::int64_t> polled_at;  // monotonic ms of each poll
    proto::Status failed_status = proto::Status::unavailable;  // what a `failed` poll says
};

DeviceAuthorization authorization(const Script& s, int interval = 5, int expires_in = 600) {
    DeviceAuthorization a;
    a.device_code = Secret("dc-secret-123");
    a.user_code = "WDJB-MJHT";
    a.verification_uri = "https://idp.example.test/device";
    a.verification_uri_complete = "https://idp.example.test/device?user_code=WDJB-MJHT";
    a.interval_s = interval;
    a.expires_at = s.wall_s + expires_in;
    return a;
}

DeviceFlowDeps deps(Script& s) {
    DeviceFlowDeps d;
    d.poll = [&s](const DeviceAuthorization& a) {
        // The device code goes to the IdP, and nowhere else.
        assert_string_equal(a.device_code.c_str(), "dc-secret-123");
        s.polled_at.push_back(s.mono_ms);
        DevicePoll p;
        p.state = s.answers.empty() ? DevicePollState::pending : s.answers.front();
        if (!s.answers.empty()) s.answers.pop_front();
        if (p.state == DevicePollState::approved) {
            p.outcome.status = proto::Status::ok;
            p.outcome.user.username = "alice";
        }
        if (p.state == DevicePollState::failed) {
            p.outcome.status = s.failed_status;
            p.outcome.message = s.failed_status == proto::Status::unavailable ? "identity provider unreachable"
                                                                              : "invalid_client";
        }
        return p;
    };
    d.approved = [](const OidcOutcome& out) {
        proto::Verdict v;
        v.status = out.status;
        v.user = out.user.username;
        v.role = proto::Role::admin;
        return v;
    };
    d.monotonic_ms = [&s] { return s.mono_ms; };
    d.wall_s = [&s] { return s.wall_s; };
    return d;
}

DeviceFlowOptions options(bool qr, bool ascii, std::int64_t wait_ms = 10000) {
    DeviceFlowOptions o;
    o.idp_name = "Company SSO";
    o.qr = qr;
    o.ascii_only = ascii;
    o.client_wait_ms = wait_ms;
    return o;
}

const proto::Verdict& verdict_of(const Step& step) {
    assert_true(step.reply.has_value());
    assert_true(std::holds_alternative<proto::Verdict>(*step.reply));
    return std::get<proto::Verdict>(*step.reply);
}

bool is_prompt(const Step& step) {
    return step.reply.has_value() && std::holds_alternative<proto::Prompt>(*step.reply);
}

// Advances the clock to the step's wake time and wakes the flow.
Step wake_at(Script& s, DeviceFlow& f, const Step& step) {
    assert_false(step.reply.has_value());
    assert_true(step.wake_at_ms >= s.mono_ms);
    s.mono_ms = step.wake_at_ms;
    return f.wake();
}

void prompt_shows_uri_code_and_ascii_qr(void**) {
    Script s;
    DeviceFlow f(authorization(s), options(true, true), deps(s));
    proto::Prompt p = f.first_prompt();
    assert_int_equal(static_cast<int>(p.style), static_cast<int>(proto::PromptStyle::echo_on));
    assert_non_null(strstr(p.text.c_str(), "https://idp.example.test/device\n"));
    assert_non_null(strstr(p.text.c_str(), "WDJB-MJHT"));
    assert_non_null(strstr(p.text.c_str(), "Company SSO"));
    assert_non_null(strstr(p.text.c_str(), "##"));
    assert_non_null(strstr(p.text.c_str(), "Press Enter"));
    for (unsigned char c : p.text) assert_true(c < 0x80);  // sshd's client passes ASCII only
    // The QR code in the prompt is exactly the one for verification_uri_complete.
    auto qr = render_qr("https://idp.example.test/device?user_code=WDJB-MJHT", QrStyle::ascii);
    assert_true(qr.has_value());
    assert_non_null(strstr(p.text.c_str(), qr->c_str()));
}

void prompt_half_blocks_and_no_qr(void**) {
    Script s;
    DeviceFlow utf8(authorization(s), options(true, false), deps(s));
    std::string t = utf8.first_prompt().text;
    assert_non_null(strstr(t.c_str(), "\u2588"));
    assert_null(strstr(t.c_str(), "##"));
    DeviceFlow plain(authorization(s), options(false, true), deps(s));
    t = plain.first_prompt().text;
    assert_null(strstr(t.c_str(), "##"));
    assert_null(strstr(t.c_str(), "scan"));
    // Without the QR code the URL and the code are still there as text.
    assert_non_null(strstr(t.c_str(), "WDJB-MJHT"));
    assert_non_null(strstr(t.c_str(), "https://idp.example.test/device?user_code=WDJB-MJHT"));
}

void polls_at_interval_until_approved(void**) {
    Script s;
    s.answers = {DevicePollState::pending, DevicePollState::pending, DevicePollState::approved};
    DeviceFlow f(authorization(s, 2), options(true, true, 30000), deps(s));
    Step st = f.answer(Secret(""));
    assert_int_equal(st.wake_at_ms, s.mono_ms);  // first poll right after Enter
    st = wake_at(s, f, st);
    st = wake_at(s, f, st);
    st = wake_at(s, f, st);
    const proto::Verdict& v = verdict_of(st);
    assert_int_equal(static_cast<int>(v.status), static_cast<int>(proto::Status::ok));
    assert_string_equal(v.user.c_str(), "alice");
    assert_int_equal(s.polled_at.size(), 3);
    assert_int_equal(s.polled_at[1] - s.polled_at[0], 2000);
    assert_int_equal(s.polled_at[2] - s.polled_at[1], 2000);
}

void slow_down_adds_five_seconds(void**) {
    Script s;
    s.answers = {DevicePollState::slow_down, DevicePollState::slow_down, DevicePollState::approved};
    DeviceFlow f(authorization(s, 1), options(true, true, 60000), deps(s));
    Step st = f.answer(Secret(""));
    st = wake_at(s, f, st);
    assert_int_equal(f.interval_s(), 6);
    st = wake_at(s, f, st);
    assert_int_equal(f.interval_s(), 11);
    st = wake_at(s, f, st);
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::ok));
    assert_int_equal(s.polled_at[1] - s.polled_at[0], 6000);
    assert_int_equal(s.polled_at[2] - s.polled_at[1], 11000);
}

// The client waits 10 s per step: a flow still pending prompts again before that runs out.
void reprompts_before_the_client_gives_up(void**) {
    Script s;
    DeviceFlow f(authorization(s, 3), options(true, true, 10000), deps(s));
    std::int64_t entered = s.mono_ms;
    Step st = f.answer(Secret(""));
    while (!st.reply) st = wake_at(s, f, st);
    assert_true(is_prompt(st));
    assert_true(s.mono_ms - entered < 10000);
    assert_non_null(strstr(std::get<proto::Prompt>(*st.reply).text.c_str(), "not finished"));
    assert_non_null(strstr(std::get<proto::Prompt>(*st.reply).text.c_str(), "WDJB-MJHT"));
    // Enter again: polling resumes, still no faster than the interval.
    s.mono_ms += 500;
    std::int64_t last = s.polled_at.back();
    st = f.answer(Secret(""));
    assert_true(st.wake_at_ms >= last + 3000);
}

void denied_expired_failed_in_words(void**) {
    Script s;
    s.answers = {DevicePollState::denied};
    DeviceFlow denied(authorization(s), options(true, true), deps(s));
    Step st = wake_at(s, denied, denied.answer(Secret("")));
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::auth_err));
    assert_non_null(strstr(verdict_of(st).message.c_str(), "refused"));

    s.answers = {DevicePollState::expired};
    DeviceFlow expired(authorization(s), options(true, true), deps(s));
    st = wake_at(s, expired, expired.answer(Secret("")));
    assert_non_null(strstr(verdict_of(st).message.c_str(), "expired"));

    // An IdP that fails three polls in a row (5xx, no answer) ends the flow; the client was
    // told in words.
    s.answers = {DevicePollState::failed, DevicePollState::failed, DevicePollState::failed};
    DeviceFlow failed(authorization(s, 1), options(true, true, 60000), deps(s));
    st = failed.answer(Secret(""));
    while (!st.reply) st = wake_at(s, failed, st);
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::unavailable));
    assert_non_null(strstr(verdict_of(st).message.c_str(), "unreachable"));
    assert_true(s.answers.empty());

    // A refusal of the client itself is not transient: it ends the flow at once.
    s.answers = {DevicePollState::failed, DevicePollState::approved};
    s.failed_status = proto::Status::internal;
    DeviceFlow refused(authorization(s), options(true, true), deps(s));
    st = wake_at(s, refused, refused.answer(Secret("")));
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::internal));
    assert_int_equal(s.answers.size(), 1);
}

// A poll the IdP fails (HTTP 5xx under load) does not lose the sign-in: the next poll waits
// twice the interval, the one after that four times, and an approval after them gets in.
void transient_failures_back_off(void**) {
    Script s;
    s.answers = {DevicePollState::failed, DevicePollState::failed, DevicePollState::approved};
    DeviceFlow f(authorization(s, 2), options(true, true, 60000), deps(s));
    Step st = f.answer(Secret(""));
    while (!st.reply) st = wake_at(s, f, st);
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::ok));
    assert_int_equal(s.polled_at.size(), 3);
    assert_int_equal(s.polled_at[1] - s.polled_at[0], 4000);
    assert_int_equal(s.polled_at[2] - s.polled_at[1], 8000);
    // A pending answer in between starts the count again.
    Script t;
    t.answers = {DevicePollState::failed, DevicePollState::failed, DevicePollState::pending,
                 DevicePollState::failed, DevicePollState::failed, DevicePollState::approved};
    DeviceFlow g(authorization(t, 1), options(true, true, 60000), deps(t));
    st = g.answer(Secret(""));
    while (!st.reply) st = wake_at(t, g, st);
    assert_int_equal(static_cast<int>(verdict_of(st).status), static_cast<int>(proto::Status::ok));
    assert_int_equal(t.polled_at[3] - t.polled_at[2], 1000);
}

// Past expires_in the flow ends without asking the IdP again.
void expiry_by_the_clock(void**) {
    Script s;
    DeviceFlow f(authorization(s, 5, 60), options(true, true), deps(s));
    s.wall_s += 61;
    Step st = f.answer(Secret(""));
    assert_non_null(strstr(verdict_of(st).message.c_str(), "expired"));
    assert_int_equal(s.polled_at.size(), 0);
    // And the server stops waiting for Enter no later than the code's expiry.
    Script t;
    DeviceFlow g(authorization(t, 5, 60), options(true, true), deps(t));
    assert_true(g.answer_deadline_ms() <= t.mono_ms + 60000);
}

void qr_renders_and_refuses_oversize(void**) {
    auto q = render_qr("https://x.test/d?c=1", QrStyle::ascii);
    assert_true(q.has_value());
    // Square: every line has the same width, as many lines as modules.
    std::size_t lines = 0, width = q->find('\n');
    for (std::size_t at = 0; at < q->size(); at = q->find('\n', at) + 1, ++lines)
        assert_int_equal(q->find('\n', at) - at, width);
    assert_int_equal(lines * 2, width);
    assert_false(render_qr(std::string(600, 'a'), QrStyle::ascii).has_value());
    assert_false(render_qr("", QrStyle::ascii).has_value());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prompt_shows_uri_code_and_ascii_qr),
        cmocka_unit_test(prompt_half_blocks_and_no_qr),
        cmocka_unit_test(polls_at_interval_until_approved),
        cmocka_unit_test(slow_down_adds_five_seconds),
        cmocka_unit_test(reprompts_before_the_client_gives_up),
        cmocka_unit_test(denied_expired_failed_in_words),
        cmocka_unit_test(transient_failures_back_off),
        cmocka_unit_test(expiry_by_the_clock),
        cmocka_unit_test(qr_renders_and_refuses_oversize),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
