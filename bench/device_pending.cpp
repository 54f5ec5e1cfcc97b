// SPDX-License-Identifier: GPL-3.0-or-later
// Holds N device logins pending at once against a running cvat-authd: N connections, each an
// AuthRequest with method=device, each first prompt answered with Enter (the user "went to the
// browser"), after which the daemon polls the IdP on its timers. Re-prompts (the client's wait
// ran out) are answered the same way. Prints one JSON line when all N are pending, then keeps
// them pending for SECONDS and prints a second line; a flow that ends (denied, expired, an
// error) is counted, not restarted.
//   cvat-bench-device SOCKET N SECONDS [IDP]
#include <poll.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "protocol.hpp"
#include "transport.hpp"

using namespace cvat;

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Flow {
    UniqueFd fd;
    int prompts = 0;
    bool ended = false;
};

bool send_request(int fd, const proto::Request& req) {
    auto frame = proto::encode_request(req);
    return frame && proto::send_frame(fd, *frame, proto::Deadline::after_ms(5000));
}

// Reads one answer of a flow: a prompt is answered with Enter, a verdict ends it.
void serve(Flow& f, int& ended, int& errors) {
    auto fail = [&] {
        ++errors;
        f.ended = true;
        f.fd.reset();
    };
    auto body = proto::recv_frame(f.fd.get(), proto::Deadline::after_ms(5000));
    if (!body) return fail();
    auto msg = proto::decode_response(*body);
    if (!msg) return fail();
    if (std::holds_alternative<proto::Prompt>(*msg)) {
        ++f.prompts;
        proto::Request enter{std::in_place_type<proto::ConvReply>};
        if (!send_request(f.fd.get(), enter)) fail();
        return;
    }
    // A flow that ended: what the daemon said (the first few).
    if (const auto* v = std::get_if<proto::Verdict>(&*msg); v != nullptr && ended < 5)
        std::fprintf(stderr, "flow ended: %s: %s\n", proto::status_name(v->status), v->message.c_str());
    ++ended;
    f.ended = true;
    f.fd.reset();
}

// Serves every readable flow for `seconds`.
void pump(std::vector<Flow>& flows, double seconds, int& ended, int& errors) {
    const double until = now_s() + seconds;
    std::vector<pollfd> fds;
    std::vector<std::size_t> which;
    while (now_s() < until) {
        fds.clear();
        which.clear();
        for (std::size_t i = 0; i < flows.size(); ++i)
            if (!flows[i].ended) {
                fds.push_back({flows[i].fd.get(), POLLIN, 0});
                which.push_back(i);
            }
        if (fds.empty()) return;
        int n = ::poll(fds.data(), fds.size(), 100);
        for (std::size_t k = 0; n > 0 && k < fds.size(); ++k)
            if (fds[k].revents != 0) serve(flows[which[k]], ended, errors);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: cvat-bench-device SOCKET N SECONDS [IDP]\n");
        return 64;
    }
    const std::string socket = argv[1];
    const int n = std::atoi(argv[2]);
    const double seconds = std::atof(argv[3]);
    const std::string idp = argc > 4 ? argv[4] : "";
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < static_cast<rlim_t>(n) + 64) {
        rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(n) + 64);
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    std::vector<Flow> flows(static_cast<std::size_t>(n));
    int ended = 0, errors = 0;
    const double t0 = now_s();
    for (int i = 0; i < n; ++i) {
        auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        if (!fd) {
            std::fprintf(stderr, "connect %d: %s\n", i, fd.error().detail.c_str());
            return 1;
        }
        flows[i].fd = std::move(*fd);
        proto::Request req{std::in_place_type<proto::AuthRequest>};
        auto& a = std::get<proto::AuthRequest>(req);
        a.user = "dev" + std::to_string(i);
        a.service = "bench-device";
        a.method = proto::AuthMethod::device;
        a.idp = idp;
        a.flags = proto::flag_no_qr;
        a.timeout_ms = 60000;  // a re-prompt every minute or so, not every 10 s
        if (!send_request(flows[i].fd.get(), req)) {
            std::fprintf(stderr, "request %d not sent\n", i);
            return 1;
        }
    }
    // Every flow answered its first prompt with Enter: all N pending.
    auto all_prompted = [&] {
        for (const auto& f : flows)
            if (!f.ended && f.prompts == 0) return false;
        return true;
    };
    while (!all_prompted() && now_s() - t0 < 300) pump(flows, 0.2, ended, errors);
    int pending = 0;
    for (const auto& f : flows) pending += f.ended ? 0 : 1;
    std::printf("{\"test\":\"device\",\"phase\":\"started\",\"flows\":%d,\"pending\":%d,\"ended\":%d,\"errors\":%d,"
                "\"start_s\":%.2f}\n",
                n, pending, ended, errors, now_s() - t0);
    std::fflush(stdout);
    pump(flows, seconds, ended, errors);
    pending = 0;
    int prompts = 0;
    for (const auto& f : flows) {
        pending += f.ended ? 0 : 1;
        prompts += f.prompts;
    }
    std::printf("{\"test\":\"device\",\"phase\":\"held\",\"flows\":%d,\"pending\":%d,\"ended\":%d,\"errors\":%d,"
                "\"prompts\":%d,\"held_s\":%.1f}\n",
                n, pending, ended, errors, prompts, seconds);
    return errors == 0 && pending == n ? 0 : 1;
}
