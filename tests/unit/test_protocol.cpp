// SPDX-License-Identifier: GPL-3.0-or-later
// Protocol round trips, and the decoder's refusal of truncated, oversize and malformed frames.
#include "cmocka.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kept_fds.hpp"
#include "protocol.hpp"
#include "transport.hpp"

using namespace cvat;
using namespace cvat::proto;

namespace {

std::span<const std::uint8_t> body_of(const SecureBytes& frame) {
    return {frame.data() + kHeaderSize, frame.size() - kHeaderSize};
}

void put_u32(SecureBytes& b, std::size_t at, std::uint32_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 24);
    b[at + 1] = static_cast<std::uint8_t>(v >> 16);
    b[at + 2] = static_cast<std::uint8_t>(v >> 8);
    b[at + 3] = static_cast<std::uint8_t>(v);
}

AuthRequest sample_auth() {
    AuthRequest a;
    a.user = "alice";
    a.password = Secret("s3cret pass");
    a.service = "sshd";
    a.rhost = "192.0.2.1";
    a.tty = "ssh";
    a.method = AuthMethod::automatic;
    a.idp = "company-oidc";
    a.flags = flag_no_qr | flag_ascii_only;
    a.timeout_ms = 15000;
    return a;
}

void auth_round_trip(void**) {
    auto frame = encode_request(sample_auth());
    assert_true(frame.has_value());
    auto len = frame_length(std::span<const std::uint8_t, kHeaderSize>(frame->data(), kHeaderSize));
    assert_true(len.has_value());
    assert_int_equal(*len, frame->size() - kHeaderSize);
    auto back = decode_request(body_of(*frame));
    assert_true(back.has_value());
    auto& a = std::get<AuthRequest>(*back);
    assert_string_equal(a.user.c_str(), "alice");
    assert_string_equal(a.password.c_str(), "s3cret pass");
    assert_string_equal(a.service.c_str(), "sshd");
    assert_string_equal(a.rhost.c_str(), "192.0.2.1");
    assert_string_equal(a.tty.c_str(), "ssh");
    assert_int_equal(static_cast<int>(a.method), static_cast<int>(AuthMethod::automatic));
    assert_string_equal(a.idp.c_str(), "company-oidc");
    assert_int_equal(a.flags, flag_no_qr | flag_ascii_only);
    assert_int_equal(a.timeout_ms, 15000);
}

void every_request_round_trips(void**) {
    std::vector<Request> all;
    all.emplace_back(sample_auth());
    all.emplace_back(ConvReply{Secret("")});
    all.emplace_back(AccountRequest{"bob", "nginx", "::1", "", Role::admin, "company-oidc"});
    all.emplace_back(SessionRequest{"bob", "sshd", false, "ldap"});
    all.emplace_back(PasswordRequest{"bob", "passwd", Secret("old"), Secret("new")});
    all.emplace_back(PasswdByName{"bob"});
    all.emplace_back(PasswdByUid{200001});
    all.emplace_back(GroupByName{"cvat-admin"});
    all.emplace_back(GroupByGid{200002});
    all.emplace_back(InitGroups{"bob"});
    all.emplace_back(StatusRequest{});
    all.emplace_back(ExplainRequest{"bob"});
    for (const auto& r : all) {
        auto frame = encode_request(r);
        assert_true(frame.has_value());
        auto back = decode_request(body_of(*frame));
        assert_true(back.has_value());
        assert_int_equal(back->index(), r.index());
        // Re-encoding what was decoded gives the same bytes.
        auto again = encode_request(*back);
        assert_true(again.has_value());
        assert_true(*again == *frame);
    }
    auto acct = decode_request(body_of(*encode_request(all[2])));
    assert_int_equal(static_cast<int>(std::get<AccountRequest>(*acct).require_role), static_cast<int>(Role::admin));
    assert_string_equal(std::get<AccountRequest>(*acct).idp.c_str(), "company-oidc");
}

void every_response_round_trips(void**) {
    Verdict v;
    v.status = Status::ok;
    v.user = "alice";
    v.role = Role::admin;
    v.message = "welcome";
    v.attributes = {{"email", "alice@example.test"}, {"first_name", "Alice"}};
    std::vector<Response> all;
    all.emplace_back(v);
    all.emplace_back(Prompt{PromptStyle::echo_on, "Open https://idp/device and enter ABCD-EFGH, then press Enter"});
    all.emplace_back(PasswdReply{Status::ok, "alice", 200001, 200001, "Alice A", "/home/alice", "/bin/bash"});
    all.emplace_back(GroupReply{Status::ok, "cvat-admin", 200100, {"alice", "carol"}});
    all.emplace_back(GroupsReply{Status::ok, {200100, 200101}});
    all.emplace_back(StatusReply{"0.1.0", 42, {{"ldap://127.0.0.1:389", true, "ok"}}});
    all.emplace_back(ExplainReply{Status::ok, Role::user, {"line one", "line two"}});
    for (const auto& r : all) {
        auto frame = encode_response(r);
        assert_true(frame.has_value());
        auto back = decode_response(body_of(*frame));
        assert_true(back.has_value());
        assert_int_equal(back->index(), r.index());
        auto again = encode_response(*back);
        assert_true(*again == *frame);
    }
    auto back = decode_response(body_of(*encode_response(all[0])));
    auto& bv = std::get<Verdict>(*back);
    assert_string_equal(std::string(bv.attribute("email")).c_str(), "alice@example.test");
    assert_true(bv.attribute("missing").empty());
}

// Every prefix of a valid body is refused, never read past its end (ASan would catch it).
void truncated_frames_are_refused(void**) {
    auto frame = encode_request(sample_auth());
    auto body = body_of(*frame);
    for (std::size_t n = 0; n < body.size(); ++n) {
        auto r = decode_request(body.first(n));
        assert_false(r.has_value());
        assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::protocol));
    }
}

void trailing_bytes_are_refused(void**) {
    auto frame = encode_request(PasswdByName{"bob"});
    frame->push_back(0);
    auto r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_non_null(strstr(r.error().detail.c_str(), "trailing"));
}

void oversize_frame_length_is_refused(void**) {
    std::uint8_t header[4] = {0x00, 0x01, 0x00, 0x01};  // 65537 > kMaxFrame
    auto r = frame_length(std::span<const std::uint8_t, 4>(header));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::too_large));
    std::uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    assert_false(frame_length(std::span<const std::uint8_t, 4>(huge)).has_value());
    std::uint8_t tiny[4] = {0, 0, 0, 3};  // shorter than version+type
    assert_false(frame_length(std::span<const std::uint8_t, 4>(tiny)).has_value());
}

// A string length field that claims more than the frame holds, or more than the cap.
void lying_string_length_is_refused(void**) {
    auto frame = encode_request(PasswdByName{"bob"});
    // body: version(2) type(2) len(4) "bob"
    put_u32(*frame, kHeaderSize + 4, 0x7fffffff);
    auto r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::too_large));
    put_u32(*frame, kHeaderSize + 4, 4);  // under the cap, over the bytes present
    r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::protocol));
}

void lying_list_count_is_refused(void**) {
    GroupsReply g{Status::ok, {1, 2}};
    auto frame = encode_response(g);
    // body: version(2) type(2) status(1) count(4) ...
    put_u32(*frame, kHeaderSize + 5, 3);  // more items than bytes
    assert_false(decode_response(body_of(*frame)).has_value());
    put_u32(*frame, kHeaderSize + 5, static_cast<std::uint32_t>(kMaxGroups + 1));
    auto r = decode_response(body_of(*frame));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::too_large));
}

void over_cap_fields_are_not_encoded(void**) {
    PasswdByName big{std::string(kMaxName + 1, 'a')};
    auto r = encode_request(big);
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::too_large));
    AuthRequest a = sample_auth();
    a.password = Secret(std::string(kMaxSecret + 1, 'x'));
    assert_false(encode_request(std::move(a)).has_value());
    PasswdByName nul{std::string("bo\0b", 4)};
    assert_false(encode_request(nul).has_value());
}

void wrong_version_unknown_type_bad_enum(void**) {
    auto frame = encode_request(StatusRequest{});
    (*frame)[kHeaderSize + 1] = 2;  // version 2
    auto r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_non_null(strstr(r.error().detail.c_str(), "version"));

    frame = encode_request(StatusRequest{});
    (*frame)[kHeaderSize + 3] = 99;  // type 99
    r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_non_null(strstr(r.error().detail.c_str(), "unknown request type"));

    // A response type is not a request.
    auto resp = encode_response(Prompt{PromptStyle::info, "x"});
    assert_false(decode_request(body_of(*resp)).has_value());

    AccountRequest acct{"bob", "s", "", "", Role::user, ""};
    frame = encode_request(acct);
    (*frame)[frame->size() - 5] = 9;  // require_role out of range (before the empty idp)
    r = decode_request(body_of(*frame));
    assert_false(r.has_value());
    assert_non_null(strstr(r.error().detail.c_str(), "out of range"));
}

void nul_inside_string_is_refused(void**) {
    auto frame = encode_request(PasswdByName{"bob"});
    (*frame)[kHeaderSize + 8 + 1] = 0;  // "b\0b"
    assert_false(decode_request(body_of(*frame)).has_value());
}

void describe_leaves_secrets_out(void**) {
    std::string d = describe_request(sample_auth());
    assert_null(strstr(d.c_str(), "s3cret"));
    assert_non_null(strstr(d.c_str(), "user=alice"));
    assert_non_null(strstr(d.c_str(), "method=auto"));
    AuthRequest hostile = sample_auth();
    hostile.user = "evil\nuser=root";
    d = describe_request(std::move(hostile));
    assert_null(strchr(d.c_str(), '\n'));
    d = describe_request(PasswordRequest{"bob", "passwd", Secret("oldpw"), Secret("newpw")});
    assert_null(strstr(d.c_str(), "oldpw"));
    assert_null(strstr(d.c_str(), "newpw"));
}

// reset() wipes the text where it was, not only when the memory is freed: the PAM module
// drops the password that way while the conversation goes on.
void secret_reset_wipes(void**) {
    Secret s("Marker-Reset-77");
    const char* where = s.c_str();
    const std::size_t n = s.size();
    s.reset();
    assert_ptr_equal(s.c_str(), where);  // the same buffer, kept
    for (std::size_t i = 0; i < n; ++i) assert_int_equal(where[i], 0);
}

// The transport refuses an oversize length before reading (or allocating) the body.
void transport_refuses_oversize_and_closed_peer(void**) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::uint8_t header[4] = {0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(write(sv[1], header, 4), 4);
    auto r = recv_frame(sv[0], Deadline::after_ms(1000));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::too_large));
    close(sv[1]);
    r = recv_frame(sv[0], Deadline::after_ms(1000));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::unavailable));
    close(sv[0]);
}

void transport_times_out_on_silent_peer(void**) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    auto t0 = monotonic_ms();
    auto r = recv_frame(sv[0], Deadline::after_ms(200));
    auto took = monotonic_ms() - t0;
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::timeout));
    assert_true(took >= 150 && took < 2000);
    close(sv[0]);
    close(sv[1]);
}

// A listener whose queue is full (a burst of clients the daemon has not accepted yet): the
// connect waits for room within its deadline and gives a connected socket, never an
// unconnected one that fails at the first send; with no room before the deadline, it fails.
void transport_waits_for_a_full_listen_queue(void**) {
    char dir[] = "/tmp/cvat-test-backlog.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const std::string path = std::string(dir) + "/socket";
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    assert_int_equal(bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    assert_int_equal(listen(lfd, 1), 0);
    // Fill the queue: non-blocking connects until one is refused with EAGAIN.
    std::vector<int> queued;
    for (int i = 0; i < 64; ++i) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(c >= 0);
        if (connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            assert_int_equal(errno, EAGAIN);
            close(c);
            break;
        }
        queued.push_back(c);
    }
    assert_true(!queued.empty() && queued.size() < 64);

    // Nobody accepts: the connect gives up at its deadline, after waiting for it.
    auto t0 = monotonic_ms();
    auto none = connect_unix(path, Deadline::after_ms(200));
    auto took = monotonic_ms() - t0;
    if (none) fail_msg("connected (fd %d) to a listener whose queue stayed full", none->get());
    assert_int_equal(static_cast<int>(none.error().code), static_cast<int>(ErrorCode::unavailable));
    assert_true(took >= 150 && took < 2000);

    // The daemon accepts 300 ms later: the connect gets in, and the socket is connected.
    std::vector<int> accepted;  // kept open until the end: the peer of a connected socket
    std::thread acceptor([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        pollfd p{lfd, POLLIN, 0};
        while (poll(&p, 1, 1000) == 1) {
            int a = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (a >= 0) accepted.push_back(a);
        }
    });
    auto fd = connect_unix(path, Deadline::after_ms(3000));
    acceptor.join();
    if (!fd) fail_msg("no connection once the queue had room: %s", fd.error().detail.c_str());
    sockaddr_un peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd->get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0)
        fail_msg("connect_unix gave an unconnected socket: getpeername: %s", std::strerror(errno));
    for (int c : queued) close(c);
    for (int a : accepted) close(a);
    close(lfd);
    unlink(path.c_str());
    rmdir(dir);
}

// A kept connection whose number the host closed and reused for another thread's kept
// connection: the first one's record is taken off the list by the socket's identity, not by
// the number, so the other stays listed and a forked child still closes it.
void kept_connection_taken_off_by_identity(void**) {
    using kept_fds::Record;
    static const char kPath[] = "/run/cvat-auth/socket";
    const std::size_t len = sizeof kPath - 1;
    int c_pair[2], a_pair[2], b_pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c_pair), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a_pair), 0);
    Record c, a, b;
    assert_true(c.keep(c_pair[0], kPath, len, getpid(), geteuid(), getegid()));
    assert_true(a.keep(a_pair[0], kPath, len, getpid(), geteuid(), getegid()));
    assert_int_equal(c.take(kPath, len), c_pair[0]);  // c's list slot is free again
    // The host closes a's number behind its back; b's new connection gets that number and is
    // kept (in the slot c left).
    const int number = a_pair[0];
    close(number);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b_pair), 0);
    if (b_pair[0] != number) {  // the lowest free number is usually a's already
        assert_int_equal(dup3(b_pair[0], number, O_CLOEXEC), number);
        close(b_pair[0]);
    }
    assert_true(b.keep(number, kPath, len, getpid(), geteuid(), getegid()));
    // a's next request: its socket is gone, so its record is dropped, and b's socket (same
    // number) is neither closed nor taken off the list.
    assert_int_equal(a.take(kPath, len), -1);
    assert_int_not_equal(fcntl(number, F_GETFD), -1);
    // What a forked child does: every listed socket is closed, b's too.
    kept_fds::after_fork_child();
    if (fcntl(number, F_GETFD) != -1) fail_msg("b's kept connection was left open in a forked child");
    for (int fd : {c_pair[0], c_pair[1], a_pair[1], b_pair[1]}) close(fd);
}

void roles_parse_and_order(void**) {
    Role r;
    assert_true(parse_role("admin", r));
    assert_int_equal(static_cast<int>(r), static_cast<int>(Role::admin));
    assert_false(parse_role("Admin", r));
    assert_true(Role::admin > Role::user && Role::user > Role::worker && Role::worker > Role::none);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auth_round_trip),
        cmocka_unit_test(every_request_round_trips),
        cmocka_unit_test(every_response_round_trips),
        cmocka_unit_test(truncated_frames_are_refused),
        cmocka_unit_test(trailing_bytes_are_refused),
        cmocka_unit_test(oversize_frame_length_is_refused),
        cmocka_unit_test(lying_string_length_is_refused),
        cmocka_unit_test(lying_list_count_is_refused),
        cmocka_unit_test(over_cap_fields_are_not_encoded),
        cmocka_unit_test(wrong_version_unknown_type_bad_enum),
        cmocka_unit_test(nul_inside_string_is_refused),
        cmocka_unit_test(describe_leaves_secrets_out),
        cmocka_unit_test(secret_reset_wipes),
        cmocka_unit_test(transport_refuses_oversize_and_closed_peer),
        cmocka_unit_test(transport_times_out_on_silent_peer),
        cmocka_unit_test(transport_waits_for_a_full_listen_queue),
        cmocka_unit_test(kept_connection_taken_off_by_identity),
        cmocka_unit_test(roles_parse_and_order),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
