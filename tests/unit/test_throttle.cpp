// SPDX-License-Identifier: GPL-3.0-or-later
// helper/throttle: the failed-login counters, with time as a parameter. Delays double from
// `delay` past the threshold and stop at max_delay; attempts queue one per delay and past
// max_delay are refused; a success clears the user's count but not the peer's; a quiet window
// forgets a key; the tables never hold more than max_entries keys.
#include "cmocka.hpp"

#include <string>

#include "throttle.hpp"

using cvat::helper::Throttle;
using cvat::helper::ThrottleSettings;

namespace {

ThrottleSettings settings() {
    ThrottleSettings s;
    s.per_user = {3, 60000};
    s.per_peer = {0, 60000};
    s.delay_ms = 1000;
    s.max_delay_ms = 8000;
    s.max_entries = 100;
    return s;
}

void delays_double_and_stop(void**) {
    const ThrottleSettings s = settings();
    assert_int_equal(Throttle::delay_for(s, s.per_user, 2), 0);
    assert_int_equal(Throttle::delay_for(s, s.per_user, 3), 1000);
    assert_int_equal(Throttle::delay_for(s, s.per_user, 4), 2000);
    assert_int_equal(Throttle::delay_for(s, s.per_user, 6), 8000);
    assert_int_equal(Throttle::delay_for(s, s.per_user, 1000), 8000);  // no overflow
    assert_int_equal(Throttle::delay_for(s, s.per_peer, 1000), 0);     // rule off
}

void held_then_checked_then_cleared(void**) {
    const ThrottleSettings s = settings();
    Throttle t;
    const Throttle::Keys alice{"alice", "uid=0 rhost=x"};
    std::int64_t now = 1000000;
    for (int i = 0; i < 3; ++i) {
        auto g = t.admit(s, alice, now, 30000);
        assert_false(g.refused);
        assert_int_equal(g.at_ms, now);  // free
        t.failed(s, alice, now);
        now += 10;
    }
    auto g = t.admit(s, alice, now, 30000);  // the third failure was 10 ms ago: 990 ms left
    assert_false(g.refused);
    assert_int_equal(g.at_ms, now + 990);
    // Another user is not held.
    g = t.admit(s, {"bob", "uid=0 rhost=x"}, now, 30000);
    assert_int_equal(g.at_ms, now);
    // The client waits less than the hold: refused at once.
    g = t.admit(s, alice, now, 500);
    assert_true(g.refused);
    // A success clears alice.
    t.succeeded(alice);
    g = t.admit(s, alice, now, 30000);
    assert_int_equal(g.at_ms, now);
    assert_int_equal(t.stats().delayed, 1);
    assert_int_equal(t.stats().refused, 1);
}

void burst_queues_then_refuses(void**) {
    const ThrottleSettings s = settings();
    Throttle t;
    const Throttle::Keys k{"walter", "uid=33 rhost=192.0.2.1"};
    std::int64_t now = 5000000;
    for (int i = 0; i < 3; ++i) t.failed(s, k, now);
    // Parallel attempts: each takes the next slot, one delay after the one before.
    std::int64_t last = now;
    int admitted = 0, refused = 0;
    for (int i = 0; i < 20; ++i) {
        auto g = t.admit(s, k, now, 30000);
        if (g.refused) {
            ++refused;
            continue;
        }
        ++admitted;
        assert_true(g.at_ms > last || (admitted == 1 && g.at_ms == now + 1000));
        assert_true(g.at_ms - now <= s.max_delay_ms);
        last = g.at_ms;
    }
    assert_int_equal(admitted, 8);  // at +1 s .. +8 s
    assert_int_equal(refused, 12);
    // Later, when the queue has drained, attempts are taken again: a delay, not a lockout.
    auto g = t.admit(s, k, now + 20000, 30000);
    assert_false(g.refused);
}

void peer_survives_success_and_window_forgets(void**) {
    ThrottleSettings s = settings();
    s.per_user = {0, 60000};
    s.per_peer = {2, 60000};
    Throttle t;
    const Throttle::Keys a{"alice", "uid=33 rhost=192.0.2.1"}, b{"bob", "uid=33 rhost=192.0.2.1"};
    std::int64_t now = 1000;
    t.failed(s, a, now);
    t.failed(s, b, now);
    t.succeeded(b);  // bob got in from there; the host's count stays
    auto g = t.admit(s, {"carol", "uid=33 rhost=192.0.2.1"}, now, 30000);
    assert_int_equal(g.at_ms, now + 1000);
    g = t.admit(s, {"carol", "uid=33 rhost=192.0.2.2"}, now, 30000);
    assert_int_equal(g.at_ms, now);
    // A window and the pending slot later, the host starts over.
    g = t.admit(s, {"carol", "uid=33 rhost=192.0.2.1"}, now + 62001, 30000);
    assert_int_equal(g.at_ms, now + 62001);
    assert_int_equal(t.stats().peers, 0);
}

void tables_bounded(void**) {
    ThrottleSettings s = settings();
    s.per_peer = {1000, 60000};
    Throttle t;
    for (int i = 0; i < 10000; ++i)
        t.failed(s, {"name-" + std::to_string(i), "uid=1000 rhost=h" + std::to_string(i % 500)}, 1000 + i);
    auto st = t.stats();
    assert_int_equal(st.users, 100);
    assert_int_equal(st.peers, 100);
    // The most recent names are the ones kept.
    for (int i = 0; i < 3; ++i) t.failed(s, {"name-9999", "p"}, 20000);
    auto g = t.admit(s, {"name-9999", "q"}, 20000, 30000);
    assert_true(g.at_ms > 20000);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delays_double_and_stop),
        cmocka_unit_test(held_then_checked_then_cleared),
        cmocka_unit_test(burst_queues_then_refuses),
        cmocka_unit_test(peer_survives_success_and_window_forgets),
        cmocka_unit_test(tables_bounded),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
