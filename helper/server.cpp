// SPDX-License-Identifier: GPL-3.0-or-later
#include "server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include <csignal>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "log.hpp"
#include "protocol.hpp"
#include "transport.hpp"

namespace cvat::helper {

namespace {

// How long a worker waits for a client to take its answer before dropping it.
constexpr int kWriteTimeoutMs = 5000;
// Pending jobs beyond this are refused with "busy": memory stays bounded under a flood.
constexpr std::size_t kMaxQueuedJobs = 4096;
// epoll_wait wakes at least this often to expire idle clients.
constexpr int kSweepIntervalMs = 500;
// Out of file descriptors (EMFILE and the like): the listener rests this long. It stays
// readable while connections wait, so retrying at once would spin the I/O thread.
constexpr int kAcceptPauseMs = 100;
// At most one warning about it per this long (the rest are counted).
constexpr std::int64_t kAcceptWarnEveryMs = 10000;

// reading: the I/O thread waits for a request (or for the answer to a Prompt); busy: a worker
// owns it; waiting: a conversation sleeps until its timer (e.g. the next device-flow poll);
// parked: kept by its client after a plain answer, watched by the workers' epoll, so that the
// worker woken by its next request reads and serves it (no hand-off through the I/O thread).
enum class ConnState { reading, busy, waiting, parked };

struct Connection {
    UniqueFd fd;
    Peer peer;
    std::uint64_t id = 0;   // unique per connection: a timer of a closed one never fires on a new one
    ConnState state = ConnState::reading;
    SecureBytes buf;        // header + body as they arrive
    std::size_t want = proto::kHeaderSize;
    std::int64_t deadline_ms = 0;
    std::unique_ptr<Conversation> conv;  // a login in progress over several round trips
    bool answered = false;  // has had a final answer (a client keeping it for its next request)

    // Kept by a client between requests, nothing pending: may be closed for a newcomer.
    bool idle() const {
        return answered && !conv && (state == ConnState::parked || (state == ConnState::reading && buf.empty()));
    }
};

enum class JobKind { request, answer, wake };

struct Job {
    JobKind kind = JobKind::request;
    int fd = -1;
    std::uint64_t id = 0;  // the connection's (Connection::id)
    Peer peer;
    proto::Request request{std::in_place_type<proto::StatusRequest>};
    Conversation* conv = nullptr;  // answer/wake: the connection's conversation (owned there)
};

// What a worker tells the I/O thread when it is done with a connection.
struct Done {
    int fd = -1;
    std::uint64_t id = 0;  // a record for a connection closed since (its number reused) is dropped
    bool keep = false;
    std::unique_ptr<Conversation> start;  // a conversation begun by this request
    bool end = false;                     // the conversation is over
    std::int64_t wake_at_ms = 0;          // sleep until then, then wake() the conversation
    bool parked = false;                  // the worker parked it in the workers' epoll itself
    bool rearmed = false;                 // the worker put it back into the I/O thread's epoll itself
    bool moved = false;                   // rearmed by unpark_all: its idle deadline stays as it was
    std::int64_t answered_ms = 0;         // parked/rearmed: when it was answered (the idle deadline's start)
    // A parked connection whose next frame had not all arrived: the bytes read so far and the
    // frame's length (header included, or kHeaderSize while the header is short); the I/O
    // thread reads the rest, within client_timeout.
    SecureBytes partial;
    std::size_t want = 0;
};

// A parked connection as the workers see it. Whoever takes it out of `parked` (a worker woken
// by its next request, or the I/O thread closing it) owns it; the other finds it gone or busy.
struct ParkedConn {
    int fd = -1;
    Peer peer;
    bool busy = false;   // a worker is serving it
    bool armed = false;  // registered in the workers' epoll (ADD once, then MOD to re-arm)
};
// The workers' epoll: the job queue's eventfd carries this tag; a parked connection, its id.
constexpr std::uint64_t kJobsTag = ~std::uint64_t{0};

struct Timer {
    std::int64_t at_ms;
    int fd;
    std::uint64_t id;
    bool operator>(const Timer& o) const { return at_ms > o.at_ms; }
};

// Enough descriptors for helper.max_connections clients beside the workers' own (directory
// and IdP connections, the cache): the soft limit is raised toward the hard one (systemd's
// default soft limit, 1024, is below what 1,024 clients need).
void raise_descriptor_limit(unsigned max_connections, unsigned workers) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    const rlim_t want = static_cast<rlim_t>(max_connections) + 8 * static_cast<rlim_t>(workers) + 64;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return;
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
    if (raised.rlim_cur > rl.rlim_cur && ::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    if (rl.rlim_cur < want)
        log::warning("the open files limit (", std::to_string(rl.rlim_cur), ") is below the ", std::to_string(want),
                     " that helper.max_connections ", std::to_string(max_connections),
                     " needs: clients beyond it wait (raise LimitNOFILE)");
}

// One frame as it arrives on a non-blocking socket: `buf` holds what came so far, `want` the
// bytes it needs (kHeaderSize until the header is in, then the whole frame's).
enum class Arrival { more, closed, whole };

// Reads what there is of the frame: whole (buf holds it all), more (nothing to read now), or
// closed (the peer hung up or the socket failed); an error for a length the protocol refuses.
Result<Arrival> read_frame(int fd, SecureBytes& buf, std::size_t& want) {
    for (;;) {
        const std::size_t have = buf.size();
        buf.resize(want);
        ssize_t n = ::recv(fd, buf.data() + have, want - have, MSG_DONTWAIT);
        if (n <= 0) {
            buf.resize(have);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Arrival::more;
            return Arrival::closed;
        }
        buf.resize(have + static_cast<std::size_t>(n));
        if (buf.size() < want) continue;
        if (want > proto::kHeaderSize) return Arrival::whole;  // a length is never under 4
        auto len = proto::frame_length(std::span<const std::uint8_t, proto::kHeaderSize>(buf.data(), proto::kHeaderSize));
        if (!len) return tl::unexpected(len.error());
        want = proto::kHeaderSize + *len;
    }
}

// The request in a whole frame. The frame may hold a password: it is wiped and emptied now,
// not when the connection closes (a client keeps it for its next request).
Result<proto::Request> take_request(SecureBytes& buf, std::size_t& want) {
    auto request = proto::decode_request(
        std::span<const std::uint8_t>(buf.data() + proto::kHeaderSize, buf.size() - proto::kHeaderSize));
    explicit_bzero(buf.data(), buf.size());
    buf.clear();
    want = proto::kHeaderSize;
    return request;
}

std::string peer_text(const Peer& p) {
    return "pid=" + std::to_string(p.pid) + " uid=" + std::to_string(p.uid) +
           " gid=" + std::to_string(p.gid);
}

}  // namespace

Result<UniqueFd> listen_unix(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
        return fail(ErrorCode::config, "helper.socket: path empty or longer than " +
                                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
    std::memcpy(addr.sun_path, path.c_str(), path.size());

    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(ErrorCode::config, path + " exists and is not a socket; refusing to replace it");
        // A socket someone still accepts on is a running daemon's: replacing it would cut that
        // daemon off from its clients (and this one may yet fail to start). Only a stale one,
        // whose connect is refused, is replaced.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (probe) {
            const int rc = ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
            if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS)
                return fail(ErrorCode::config, path + " is in use: another cvat-authd serves on it (stop that one first, "
                                                      "or give this one another helper.socket)");
        }
        ::unlink(path.c_str());
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return fail(ErrorCode::io, std::string("socket: ") + std::strerror(errno));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
        return fail(ErrorCode::io, "bind " + path + ": " + std::strerror(errno));
    if (::chmod(path.c_str(), 0666) != 0)
        return fail(ErrorCode::io, "chmod " + path + ": " + std::strerror(errno));
    if (::listen(fd.get(), SOMAXCONN) != 0)
        return fail(ErrorCode::io, std::string("listen: ") + std::strerror(errno));
    return fd;
}

struct Server::Impl {
    UniqueFd listener;
    UniqueFd epoll;
    UniqueFd signals;
    UniqueFd wakeup;  // eventfd: workers tell the I/O thread a connection is free again
    Service service;
    Reloader reload;
    unsigned max_connections;
    unsigned max_per_uid;
    int client_timeout_ms;

    mutable std::mutex runtime_mutex;
    std::string service_cache_dir;  // the one the cache was opened in (a change needs a restart)
    std::shared_ptr<const Runtime> runtime;

    std::unordered_map<int, Connection> conns;  // I/O thread only
    std::unordered_map<uid_t, unsigned> per_uid;  // open connections of each peer uid; I/O thread only

    std::mutex jobs_mutex;
    std::deque<Job> jobs;
    // Requests read and not yet answered, by any thread.
    std::atomic<int> in_flight{0};
    unsigned worker_count = 0;
    // Workers waiting for something to do. The last to get busy hands every parked connection
    // back to the I/O thread (unpark_all): a verdict-cache hit must never wait for a worker
    // (all of them may be waiting on a hung directory).
    std::atomic<int> idle_workers{0};
    // Set once, when the server stops: workers drain the queue and end, and parked
    // connections are no longer served.
    std::atomic<bool> stopping{false};
    std::vector<std::thread> workers;
    // The workers wait in one epoll of their own: for jobs (an eventfd in semaphore mode, one
    // count per job, and one per worker to stop) and for the parked connections' next requests.
    UniqueFd workers_epoll;
    UniqueFd jobs_ready;

    std::mutex done_mutex;
    std::vector<Done> done;

    // Taken after done_mutex where both are held.
    std::mutex park_mutex;
    std::unordered_map<std::uint64_t, ParkedConn> parked;

    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers;  // I/O thread only
    std::uint64_t next_id = 0;
    std::int64_t accept_paused_until = 0;  // the listener is out of epoll until then (0: watched)
    std::int64_t accept_warned_at = 0;
    unsigned accept_failures = 0;          // since the last warning

    Impl(UniqueFd l, std::shared_ptr<const Runtime> rt, Service s, Reloader r)
        : listener(std::move(l)), service(std::move(s)), reload(std::move(r)), runtime(std::move(rt)) {
        service.use(runtime);
        service_cache_dir = runtime->config.helper.cache_dir;
        max_connections = runtime->config.helper.max_connections;
        max_per_uid = runtime->config.helper.max_connections_per_uid;
        client_timeout_ms = runtime->config.helper.client_timeout_ms;
    }

    std::shared_ptr<const Runtime> current() const {
        std::lock_guard lock(runtime_mutex);
        return runtime;
    }

    Result<void> setup() {
        raise_descriptor_limit(max_connections, current()->config.helper.workers);
        epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll) return fail(ErrorCode::io, std::string("epoll_create1: ") + std::strerror(errno));
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, nullptr);
        signals.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!signals) return fail(ErrorCode::io, std::string("signalfd: ") + std::strerror(errno));
        wakeup.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!wakeup) return fail(ErrorCode::io, std::string("eventfd: ") + std::strerror(errno));
        for (int fd : {listener.get(), signals.get(), wakeup.get()}) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
                return fail(ErrorCode::io, std::string("epoll_ctl: ") + std::strerror(errno));
        }
        workers_epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
        jobs_ready.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE));
        if (!workers_epoll || !jobs_ready)
            return fail(ErrorCode::io, std::string("the workers' epoll: ") + std::strerror(errno));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kJobsTag;
        if (::epoll_ctl(workers_epoll.get(), EPOLL_CTL_ADD, jobs_ready.get(), &ev) != 0)
            return fail(ErrorCode::io, std::string("epoll_ctl: ") + std::strerror(errno));
        return {};
    }

    void start_workers(unsigned n) {
        worker_count = n;
        for (unsigned i = 0; i < n; ++i) workers.emplace_back([this] { worker_loop(); });
    }

    void stop_workers() {
        std::uint64_t count;
        {
            std::lock_guard lock(jobs_mutex);
            stopping = true;
            count = workers.size();  // one each: a worker that finds the queue empty then stops
        }
        [[maybe_unused]] auto n = ::write(jobs_ready.get(), &count, sizeof(count));
        for (auto& t : workers) t.join();
        workers.clear();
    }

    // Workers never take signals: the I/O thread reads them from the signalfd.
    void worker_loop() {
        idle_workers.fetch_add(1, std::memory_order_acq_rel);
        for (;;) {
            epoll_event ev{};
            int n = ::epoll_wait(workers_epoll.get(), &ev, 1, -1);
            if (n < 0 && errno != EINTR) {
                log::error("epoll_wait (a worker): ", std::strerror(errno));
                ::usleep(10 * 1000);
            }
            if (n != 1) continue;
            if (ev.data.u64 != kJobsTag) {
                serve_parked(ev.data.u64);
                continue;
            }
            std::uint64_t one;
            if (::read(jobs_ready.get(), &one, sizeof(one)) != sizeof(one)) continue;  // another took it
            Job job;
            {
                std::lock_guard lock(jobs_mutex);
                if (jobs.empty()) {
                    if (stopping) return;  // stopping and drained
                    continue;
                }
                job = std::move(jobs.front());
                jobs.pop_front();
            }
            Busy busy(*this);
            finish(job, serve(job));
        }
    }

    // A worker at work: the last one idle to get busy sends the parked connections back to
    // the I/O thread first.
    struct Busy {
        Impl& impl;
        explicit Busy(Impl& i) : impl(i) {
            if (impl.idle_workers.fetch_sub(1, std::memory_order_acq_rel) == 1) impl.unpark_all();
        }
        ~Busy() { impl.idle_workers.fetch_add(1, std::memory_order_acq_rel); }
        Busy(const Busy&) = delete;
        Busy& operator=(const Busy&) = delete;
    };

    // Every parked connection no worker is serving goes back into the I/O thread's epoll,
    // unannounced (the records say so before any event can come).
    void unpark_all() {
        bool wake = false;
        {
            std::lock_guard lock(done_mutex);
            std::lock_guard plock(park_mutex);
            for (auto it = parked.begin(); it != parked.end();) {
                if (it->second.busy) {
                    ++it;
                    continue;
                }
                const int fd = it->second.fd;
                if (it->second.armed) ::epoll_ctl(workers_epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
                Done d;
                d.fd = fd;
                d.id = it->first;
                d.keep = true;
                d.moved = true;
                done.push_back(std::move(d));
                if (!(done.back().rearmed = watch(fd))) wake = true;
                it = parked.erase(it);
            }
        }
        if (wake) wake_io();
    }

    // After serve(): a connection answered and waiting for its next request, with nothing for
    // the I/O thread to do now (no conversation, no timer, no close), is parked in the
    // workers' epoll from here and its record goes into `done` unannounced: the I/O thread
    // takes the record before it handles any event and looks at the connection only through
    // `parked`, so it is not woken for it (a thread wake-up per request saved, and the next
    // request one more). Anything else goes back to the I/O thread, which is woken for it.
    //
    // Parked only while nothing else is in flight: then the next request costs one thread
    // wake-up instead of two. Under load the I/O thread reads many ready connections per
    // wake-up and answers verdict-cache hits itself, which many workers each woken for one
    // request cannot match: the connection goes back into its epoll, unannounced all the same.
    void finish(const Job& job, Done d) {
        const bool quiet = d.keep && !d.start && !d.end && d.wake_at_ms == 0 && job.kind == JobKind::request;
        const bool alone = in_flight.fetch_sub(1, std::memory_order_acq_rel) == 1;
        d.answered_ms = proto::monotonic_ms();
        // With one worker, every request of another connection would send it back (unpark_all).
        if (quiet && alone && worker_count > 1) return repark(std::move(d), job.peer);
        if (!quiet) return hand_back(std::move(d));
        {
            std::lock_guard lock(done_mutex);
            unpark(d.id, d.fd);
            const int fd = d.fd;
            done.push_back(std::move(d));
            // Listed before it is watched: the I/O thread takes the record before any event.
            if ((done.back().rearmed = watch(fd))) return;
        }
        wake_io();
    }

    // Parks a connection this worker answered (d.keep) and owns. Its record is listed before
    // it is armed: a worker woken by its next request may hand it back (or close it) at once,
    // and the I/O thread must see the records in that order.
    void repark(Done d, const Peer& peer) {
        const int fd = d.fd;
        const std::uint64_t id = d.id;
        {
            std::lock_guard lock(done_mutex);
            d.parked = true;
            done.push_back(std::move(d));
            if (park(fd, id, peer)) return;
            done.back().parked = false;  // the I/O thread watches it instead
            unpark(id, fd);
        }
        wake_io();
    }

    void wake_io() {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wakeup.get(), &one, sizeof(one));
    }

    // Arms `fd` in the workers' epoll for its next request; false if epoll refused.
    bool park(int fd, std::uint64_t id, const Peer& peer) {
        // Under the lock: a worker woken at once by its next request waits for the entry, and
        // the I/O thread cannot claim (and close) the descriptor before it is armed.
        std::lock_guard lock(park_mutex);
        ParkedConn& p = parked[id];
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
        ev.data.u64 = id;
        if (::epoll_ctl(workers_epoll.get(), p.armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
            log::warning("epoll_ctl (parking a connection): ", std::strerror(errno));
            p.busy = true;  // still the caller's, which unparks it
            return false;
        }
        p = ParkedConn{fd, peer, false, true};
        return true;
    }

    // Takes a connection the caller owns out of the workers' epoll (nothing if it was never
    // parked): the I/O thread watches it from now on.
    void unpark(std::uint64_t id, int fd) {
        bool armed = false;
        {
            std::lock_guard lock(park_mutex);
            if (auto it = parked.find(id); it != parked.end()) {
                armed = it->second.armed;
                parked.erase(it);
            }
        }
        if (armed) ::epoll_ctl(workers_epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
    }

    // The I/O thread's claim on a parked connection it wants to close (idle past
    // client_timeout, or room for a newcomer): false while a worker serves it.
    bool claim_parked(std::uint64_t id) {
        std::lock_guard lock(park_mutex);
        auto it = parked.find(id);
        if (it == parked.end() || it->second.busy) return false;
        parked.erase(it);  // closing the descriptor takes it out of the workers' epoll
        return true;
    }

    // Hands a parked connection this worker owns back to the I/O thread.
    void hand_back(Done d) {
        {
            std::lock_guard lock(done_mutex);
            unpark(d.id, d.fd);
            done.push_back(std::move(d));
        }
        wake_io();
    }

    // A parked connection's client wrote (or hung up): this worker reads the request without
    // waiting and serves it as the I/O thread would have. A frame not all there yet goes
    // back to the I/O thread with what came of it (a slow client never holds a worker).
    void serve_parked(std::uint64_t id) {
        if (stopping.load(std::memory_order_acquire)) return;  // closed with the server
        Job job;
        {
            std::lock_guard lock(park_mutex);
            auto it = parked.find(id);
            if (it == parked.end() || it->second.busy) return;  // closed meanwhile, or a stale event
            it->second.busy = true;
            job.fd = it->second.fd;
            job.peer = it->second.peer;
        }
        Busy busy(*this);
        job.id = id;
        Done back;
        back.fd = job.fd;
        back.id = id;
        SecureBytes buf;
        std::size_t want = proto::kHeaderSize;
        auto arrived = read_frame(job.fd, buf, want);
        if (!arrived) return refuse_parked(std::move(back), job.peer, arrived.error());
        if (*arrived == Arrival::closed) {
            log::debug("peer ", peer_text(job.peer), ": disconnected (parked)");
            return hand_back(std::move(back));  // keep false: the I/O thread closes it
        }
        if (*arrived == Arrival::more) {
            if (buf.empty()) {
                // Woken with nothing to read: parked again as it was (no record: nothing
                // changed for the I/O thread), or closed if epoll refuses.
                {
                    std::lock_guard lock(done_mutex);
                    if (park(job.fd, id, job.peer)) return;
                }
                return hand_back(std::move(back));
            }
            back.keep = true;
            back.partial = std::move(buf);
            back.want = want;
            return hand_back(std::move(back));
        }
        auto request = take_request(buf, want);
        if (!request) return refuse_parked(std::move(back), job.peer, request.error());
        job.request = std::move(*request);
        in_flight.fetch_add(1, std::memory_order_acq_rel);
        if (auto delivered = answer_from_memory(job.fd, job.peer, job.request)) {
            back.keep = *delivered;
            return finish(job, std::move(back));
        }
        finish(job, serve(job));
    }

    void refuse_parked(Done back, const Peer& peer, const Error& err) {
        log::warning("peer ", peer_text(peer), ": frame refused: ", err.detail);
        send_refusal(back.fd, err);
        back.keep = false;
        hand_back(std::move(back));
    }

    // Runs one job and writes its answer, if it has one now.
    Done serve(Job& job) {
        Done d;
        d.fd = job.fd;
        d.id = job.id;
        auto started = proto::monotonic_ms();
        std::string what;
        std::optional<proto::Response> response;
        if (job.kind == JobKind::request) {
            auto rt = current();
            what = proto::describe_request(job.request);
            Reply reply = service.handle(rt, job.peer, job.request);
            if (reply.conversation && reply.wake_at_ms != 0) {
                // Held without an answer (a throttled login): the I/O thread's timer wakes it.
                log::debug("peer ", peer_text(job.peer), ": ", what, " -> held for ",
                           std::to_string(reply.wake_at_ms - proto::monotonic_ms()), " ms");
                d.start = std::move(reply.conversation);
                d.keep = true;
                d.wake_at_ms = reply.wake_at_ms;
                return d;
            }
            response = std::move(reply.response);
            if (reply.conversation && std::holds_alternative<proto::Prompt>(*response))
                d.start = std::move(reply.conversation);
        } else {
            what = job.kind == JobKind::answer ? "conversation answer" : "conversation step";
            Step step = job.kind == JobKind::answer
                            ? job.conv->answer(std::get<proto::ConvReply>(job.request).answer)
                            : job.conv->wake();
            if (!step.reply) {
                d.keep = true;
                d.wake_at_ms = step.wake_at_ms;
                log::debug("peer ", peer_text(job.peer), ": ", what, " -> next poll in ",
                           std::to_string(step.wake_at_ms - proto::monotonic_ms()), " ms");
                return d;
            }
            response = std::move(*step.reply);
            d.end = !std::holds_alternative<proto::Prompt>(*response);
        }
        auto frame = proto::encode_response(*response);
        if (!frame) {
            log::error("cannot encode the answer to ", what, ": ", frame.error().detail);
            return d;
        }
        log::info("peer ", peer_text(job.peer), ": ", what, " -> ", describe_response(*response), " (",
                  std::to_string(proto::monotonic_ms() - started), " ms)");
        auto sent = proto::send_frame(job.fd, *frame, proto::Deadline::after_ms(kWriteTimeoutMs));
        if (!sent) {
            log::info("peer ", peer_text(job.peer), ": answer not delivered: ", sent.error().detail);
            return d;
        }
        d.keep = true;
        return d;
    }

    void accept_all() {
        for (;;) {
            int cfd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (cfd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;
                pause_accepting(errno);
                return;
            }
            UniqueFd fd(cfd);
            ucred cred{};
            socklen_t len = sizeof(cred);
            if (::getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
                log::warning("SO_PEERCRED: ", std::strerror(errno), "; connection dropped");
                continue;
            }
            Peer peer{cred.pid, cred.uid, cred.gid};
            // One local user cannot take every slot; root (sshd, login) is bounded by the total.
            // Checked first: a newcomer refused here must not have closed anyone's connection.
            if (peer.uid != 0 && max_per_uid != 0 && per_uid[peer.uid] >= max_per_uid && !close_idle(peer.uid)) {
                log::warning("peer ", peer_text(peer), ": refused, uid ", std::to_string(peer.uid), " has ",
                             std::to_string(per_uid[peer.uid]), " connections open (helper.max_connections_per_uid)");
                continue;
            }
            // At the total: the newcomer's own uid's idle connections go first.
            if (conns.size() >= max_connections && !close_idle(peer.uid) && !close_idle(std::nullopt)) {
                log::warning("peer ", peer_text(peer), ": refused, ", std::to_string(conns.size()),
                             " connections open (helper.max_connections)");
                continue;
            }
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.fd = cfd;
            if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, cfd, &ev) != 0) {
                log::warning("epoll_ctl: ", std::strerror(errno));
                continue;
            }
            log::debug("peer ", peer_text(peer), ": connected");
            Connection c;
            c.peer = peer;
            c.id = ++next_id;
            c.deadline_ms = proto::monotonic_ms() + client_timeout_ms;
            c.fd = std::move(fd);
            conns.emplace(cfd, std::move(c));
            ++per_uid[peer.uid];
        }
    }

    // At a connection cap: the connection longest idle between requests (of `uid`, or of
    // anyone) is closed to make room; its client connects again at its next request
    // (transport.hpp, take_connection). False if every connection is in use: the newcomer is
    // refused. A connection that has not had an answer yet is never taken.
    bool close_idle(std::optional<uid_t> uid) {
        std::vector<int> skipped;  // parked, but a worker is serving them
        auto find = [&] {
            int oldest = -1;
            std::int64_t oldest_deadline = 0;
            for (const auto& [fd, c] : conns)
                if (c.idle() && (!uid || c.peer.uid == *uid) && (oldest < 0 || c.deadline_ms < oldest_deadline) &&
                    std::find(skipped.begin(), skipped.end(), fd) == skipped.end()) {
                    oldest = fd;
                    oldest_deadline = c.deadline_ms;
                }
            return oldest;
        };
        auto take = [&] {
            for (;;) {
                int fd = find();
                if (fd < 0 || conns[fd].state != ConnState::parked || claim_parked(conns[fd].id)) return fd;
                skipped.push_back(fd);
            }
        };
        int oldest = take();
        if (oldest < 0) {
            // A worker may have answered and not been heard yet (its client can be faster
            // than this thread): take back what the workers finished, then look again.
            on_done();
            skipped.clear();
            oldest = take();
        }
        if (oldest < 0) return false;
        log::debug("peer ", peer_text(conns[oldest].peer), ": idle connection closed to make room (",
                   uid ? "helper.max_connections_per_uid" : "helper.max_connections", ")");
        close_conn(oldest);
        return true;
    }

    // accept() failed for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM): the waiting
    // clients stay in the backlog and the listener rests a moment; meanwhile the connections
    // already open are served and may free descriptors.
    void pause_accepting(int err) {
        const auto now = proto::monotonic_ms();
        ++accept_failures;
        if (accept_warned_at == 0 || now - accept_warned_at >= kAcceptWarnEveryMs) {
            log::warning("accept: ", std::strerror(err), " (", std::to_string(conns.size()), " connections open, ",
                         std::to_string(accept_failures), " failed accept(s) since the last warning); new clients wait",
                         err == EMFILE || err == ENFILE ? " (raise LimitNOFILE or lower helper.max_connections)" : "");
            accept_warned_at = now;
            accept_failures = 0;
        }
        if (::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, listener.get(), nullptr) == 0)
            accept_paused_until = now + kAcceptPauseMs;
    }

    void resume_accepting() {
        if (accept_paused_until == 0 || proto::monotonic_ms() < accept_paused_until) return;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = listener.get();
        if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listener.get(), &ev) == 0) accept_paused_until = 0;
        else accept_paused_until = proto::monotonic_ms() + kAcceptPauseMs;
    }

    void close_conn(int fd) {
        ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
        auto it = conns.find(fd);
        if (it == conns.end()) return;
        if (auto u = per_uid.find(it->second.peer.uid); u != per_uid.end() && --u->second == 0) per_uid.erase(u);
        conns.erase(it);
    }

    // Tells the client why its frame is refused (best effort); the caller hangs up.
    static void send_refusal(int fd, const Error& err) {
        proto::Verdict v;
        v.status = proto::Status::bad_request;
        v.message = "request refused by cvat-authd: " + err.detail;
        if (auto frame = proto::encode_response(v)) (void)proto::send_frame(fd, *frame, proto::Deadline::after_ms(100));
    }

    // Refuses a frame: tell the client why (best effort) and hang up.
    void refuse(Connection& c, const Error& err) {
        log::warning("peer ", peer_text(c.peer), ": frame refused: ", err.detail);
        send_refusal(c.fd.get(), err);
        close_conn(c.fd.get());
    }

    void on_readable(int fd) {
        auto it = conns.find(fd);
        if (it == conns.end()) return;
        Connection& c = it->second;
        if (c.state == ConnState::waiting) {
            // A client that hangs up while its flow sleeps ends the flow now; one that talks
            // out of turn is refused.
            char byte;
            ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            if (n > 0) return refuse(c, Error{ErrorCode::protocol, "request sent while a login was in progress"});
            log::debug("peer ", peer_text(c.peer), ": disconnected during a conversation");
            close_conn(fd);
            return;
        }
        if (c.state != ConnState::reading) return;
        auto arrived = read_frame(fd, c.buf, c.want);
        if (!arrived) return refuse(c, arrived.error());
        if (*arrived == Arrival::more) return;
        if (*arrived == Arrival::closed) {
            log::debug("peer ", peer_text(c.peer), ": disconnected");
            close_conn(fd);
            return;
        }
        auto request = take_request(c.buf, c.want);
        if (!request) return refuse(c, request.error());
        submit(c, std::move(*request));
    }

    void submit(Connection& c, proto::Request request) {
        Job job;
        job.fd = c.fd.get();
        job.id = c.id;
        job.peer = c.peer;
        if (c.conv) {
            // Only the answer to the last Prompt may come now.
            if (!std::holds_alternative<proto::ConvReply>(request))
                return refuse(c, Error{ErrorCode::protocol, "a new request while a login was waiting for an answer"});
            job.kind = JobKind::answer;
            job.conv = c.conv.get();
        }
        job.request = std::move(request);
        if (!c.conv && answer_now(c, job.request)) return;
        dispatch(c, std::move(job));
    }

    // A request the service can answer from memory (a verdict cache hit) is answered by the
    // thread that read it (the I/O thread, or a worker woken by a parked connection): no
    // hand-off to a worker and back (two thread wake-ups per request). The answer is small and
    // the client is waiting for it, so it goes into the socket buffer at once; if it does not,
    // the connection is dropped rather than the thread wait. Nothing if the request needs a
    // worker's way; else whether the answer was delivered.
    std::optional<bool> answer_from_memory(int fd, const Peer& peer, const proto::Request& request) {
        const auto started = proto::monotonic_ms();
        auto response = service.answer_now(*current(), request);
        if (!response) return std::nullopt;
        auto frame = proto::encode_response(*response);
        if (!frame) return std::nullopt;  // the worker's way says why
        if (log::enabled(log::Level::info))
            log::info("peer ", peer_text(peer), ": ", proto::describe_request(request), " -> ",
                      describe_response(*response), " (", std::to_string(proto::monotonic_ms() - started), " ms)");
        if (auto sent = proto::send_frame(fd, *frame, proto::Deadline::after_ms(0)); !sent) {
            log::info("peer ", peer_text(peer), ": answer not delivered: ", sent.error().detail);
            return false;
        }
        return true;
    }

    bool answer_now(Connection& c, const proto::Request& request) {
        in_flight.fetch_add(1, std::memory_order_acq_rel);
        auto delivered = answer_from_memory(c.fd.get(), c.peer, request);
        in_flight.fetch_sub(1, std::memory_order_acq_rel);
        if (!delivered) return false;
        if (!*delivered) {
            close_conn(c.fd.get());
            return true;
        }
        c.answered = true;
        c.deadline_ms = proto::monotonic_ms() + client_timeout_ms;
        return true;
    }

    // Hands a connection to a worker.
    void dispatch(Connection& c, Job job) {
        // While a worker owns the connection, the I/O thread does not watch it (removed, not
        // masked: epoll reports a hang-up even with no events asked for).
        ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
        c.state = ConnState::busy;
        bool queued = false;
        {
            std::lock_guard lock(jobs_mutex);
            if (jobs.size() < kMaxQueuedJobs) {
                jobs.push_back(std::move(job));
                queued = true;
                in_flight.fetch_add(1, std::memory_order_acq_rel);  // finish() counts it off
            }
        }
        // Counted after the lock is released: a worker woken under it would block on it at once.
        if (queued) {
            std::uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(jobs_ready.get(), &one, sizeof(one));
            return;
        }
        log::warning("peer ", peer_text(c.peer), ": refused, ", std::to_string(kMaxQueuedJobs),
                     " requests already waiting");
        proto::Verdict v;
        v.status = proto::Status::unavailable;
        v.message = "cvat-authd is overloaded; try again";
        if (auto frame = proto::encode_response(v))
            (void)proto::send_frame(c.fd.get(), *frame, proto::Deadline::after_ms(100));
        close_conn(c.fd.get());
    }

    bool watch(int fd) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd;
        return ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
    }

    void on_done() {
        std::uint64_t count;
        [[maybe_unused]] auto n = ::read(wakeup.get(), &count, sizeof(count));
        take_done();
    }

    // The workers' finished jobs: before the I/O thread looks at any event (a worker may have
    // parked a connection without waking it, see finish()).
    void take_done() {
        std::vector<Done> finished;
        {
            std::lock_guard lock(done_mutex);
            if (done.empty()) return;
            finished.swap(done);
        }
        for (auto& d : finished) {
            auto it = conns.find(d.fd);
            if (it == conns.end() || it->second.id != d.id) continue;  // closed since
            if (!d.keep) {
                close_conn(d.fd);
                continue;
            }
            Connection& c = it->second;
            if (d.start) c.conv = std::move(d.start);
            if (d.end) c.conv.reset();
            if (d.parked || d.rearmed) {
                c.state = d.parked ? ConnState::parked : ConnState::reading;
                // A worker answered it and parked it or watches it again: its client has
                // client_timeout for the next request, from the answer (this record may be
                // taken up to a sweep later); moved back unanswered, it keeps its deadline.
                c.answered = true;
                if (!d.moved) c.deadline_ms = (d.answered_ms != 0 ? d.answered_ms : proto::monotonic_ms()) + client_timeout_ms;
                continue;
            }
            if (!watch(d.fd)) {
                close_conn(d.fd);
                continue;
            }
            if (d.wake_at_ms != 0) {
                c.state = ConnState::waiting;
                timers.push(Timer{d.wake_at_ms, d.fd, c.id});
                continue;
            }
            c.state = ConnState::reading;
            if (d.want != 0) {
                // The start of a parked connection's next frame: the rest comes here, within
                // the deadline its parking gave it.
                c.buf = std::move(d.partial);
                c.want = d.want;
                continue;
            }
            // A conversation waits for the user as long as the flow allows; a plain client
            // gets client_timeout for its next request.
            c.deadline_ms = c.conv ? c.conv->answer_deadline_ms() : proto::monotonic_ms() + client_timeout_ms;
            if (!c.conv) c.answered = true;
        }
    }

    // Wakes the conversations whose time has come.
    void run_timers() {
        auto now = proto::monotonic_ms();
        while (!timers.empty() && timers.top().at_ms <= now) {
            Timer t = timers.top();
            timers.pop();
            auto it = conns.find(t.fd);
            if (it == conns.end() || it->second.id != t.id || it->second.state != ConnState::waiting) continue;
            Connection& c = it->second;
            Job job;
            job.kind = JobKind::wake;
            job.fd = t.fd;
            job.id = t.id;
            job.peer = c.peer;
            job.conv = c.conv.get();
            dispatch(c, std::move(job));
        }
    }

    int next_wait_ms() const {
        std::int64_t at = proto::monotonic_ms() + kSweepIntervalMs;
        if (!timers.empty()) at = std::min(at, timers.top().at_ms);
        if (accept_paused_until != 0) at = std::min(at, accept_paused_until);
        return static_cast<int>(std::clamp<std::int64_t>(at - proto::monotonic_ms(), 0, kSweepIntervalMs));
    }

    // Clients idle or dribbling past client_timeout are dropped: a connect-and-wait costs
    // nothing for long.
    void sweep() {
        auto now = proto::monotonic_ms();
        std::vector<int> expired;
        for (auto& [fd, c] : conns)
            if ((c.state == ConnState::reading || c.state == ConnState::parked) && now > c.deadline_ms)
                expired.push_back(fd);
        for (int fd : expired) {
            Connection& c = conns[fd];
            if (c.state == ConnState::parked && !claim_parked(c.id)) continue;  // a worker serves it
            log::debug("peer ", peer_text(c.peer), ": idle past helper.client_timeout, closed");
            close_conn(fd);
        }
    }

    void on_reload() {
        log::info("SIGHUP: reloading the configuration");
        auto fresh = reload();
        if (!fresh) {
            log::error("reload refused, keeping the running configuration:\n", fresh.error().detail);
            return;
        }
        std::lock_guard lock(runtime_mutex);
        if ((*fresh)->config.helper.socket != runtime->config.helper.socket)
            log::warning("helper.socket changed; the new path takes effect at the next restart");
        runtime = std::move(*fresh);
        service.use(runtime);
        if (runtime->config.helper.cache_dir != service_cache_dir)
            log::warning("helper.cache_dir changed; the new directory takes effect at the next restart");
        log::set_level(runtime->config.helper.log_level);
        max_connections = runtime->config.helper.max_connections;
        max_per_uid = runtime->config.helper.max_connections_per_uid;
        client_timeout_ms = runtime->config.helper.client_timeout_ms;
        raise_descriptor_limit(max_connections, static_cast<unsigned>(workers.size()));
        log::info("configuration reloaded");
    }

    // Returns false to stop.
    bool on_signal() {
        signalfd_siginfo si{};
        while (::read(signals.get(), &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo == SIGHUP) {
                on_reload();
            } else {
                log::info("signal ", std::to_string(si.ssi_signo), ": stopping");
                return false;
            }
        }
        return true;
    }

    int loop() {
        std::vector<epoll_event> events(256);
        auto next_sweep = proto::monotonic_ms() + kSweepIntervalMs;
        for (;;) {
            int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), next_wait_ms());
            if (n < 0) {
                if (errno == EINTR) continue;
                log::error("epoll_wait: ", std::strerror(errno));
                return 1;
            }
            take_done();
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                if (fd == listener.get()) accept_all();
                else if (fd == wakeup.get()) on_done();
                else if (fd == signals.get()) {
                    if (!on_signal()) return 0;
                } else on_readable(fd);
            }
            run_timers();
            resume_accepting();
            auto now = proto::monotonic_ms();
            if (now >= next_sweep) {
                sweep();
                next_sweep = now + kSweepIntervalMs;
            }
        }
    }
};

Server::Server(UniqueFd listener, std::shared_ptr<const Runtime> runtime, Service service, Reloader reload)
    : impl_(std::make_unique<Impl>(std::move(listener), std::move(runtime), std::move(service), std::move(reload))) {}

Server::~Server() = default;

std::shared_ptr<const Runtime> Server::runtime() const { return impl_->current(); }

int Server::run() {
    auto ok = impl_->setup();
    if (!ok) {
        log::error(ok.error().detail);
        return 1;
    }
    impl_->start_workers(impl_->current()->config.helper.workers);
    log::info("serving");
    int rc = impl_->loop();
    impl_->stop_workers();
    return rc;
}

}  // namespace cvat::helper
