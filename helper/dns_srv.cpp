// SPDX-License-Identifier: GPL-3.0-or-later
// DNS SRV discovery (RFC 2782). The answer comes from the network: every length in it is
// checked by glibc's ns_* parser against the packet's end, and every name it holds is
// reduced to host-name characters before it goes into a URI.
#include "dns_srv.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <tuple>

#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include "log.hpp"

namespace cvat::helper {

namespace {

using Clock = std::chrono::steady_clock;

// CNAME hops followed from the query name to the SRV owner (resolvers put the chain first).
constexpr std::size_t kMaxAliases = 8;
// RFC 1035 §2.3.4.
constexpr std::size_t kMaxName = 253;
constexpr std::size_t kMaxLabel = 63;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view strip_dot(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return s;
}

bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

// Labels of 1-63 host characters separated by dots, 253 bytes at most. ns_name_uncompress
// writes special bytes as \DDD or \., so an escaped name fails here.
bool valid_host(std::string_view name) {
    if (name.empty() || name.size() > kMaxName) return false;
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
        } else if (!host_char(c) || ++label > kMaxLabel) {
            return false;
        }
    }
    return label > 0;
}

std::uint16_t get16(const unsigned char* p) {
    return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | p[1]);
}

SrvAnswer failed(std::string why) {
    SrvAnswer a;
    a.kind = SrvAnswer::Kind::failed;
    a.error = std::move(why);
    return a;
}

SrvAnswer not_available(std::string why) {
    SrvAnswer a;
    a.kind = SrvAnswer::Kind::not_available;
    a.error = std::move(why);
    return a;
}

// Closes a res_ninit()ed state.
struct ResClose {
    void operator()(res_state s) const noexcept { res_nclose(s); }
};

}  // namespace

SrvAnswer parse_srv_answer(std::span<const unsigned char> packet, std::string_view qname) {
    if (packet.size() > kMaxDnsAnswer) return failed("answer longer than a DNS message");
    ns_msg msg{};
    if (ns_initparse(packet.data(), static_cast<int>(packet.size()), &msg) < 0)
        return failed("malformed DNS answer");
    if (ns_msg_getflag(msg, ns_f_qr) == 0) return failed("malformed DNS answer: not a response");
    const int rcode = ns_msg_getflag(msg, ns_f_rcode);
    if (rcode == ns_r_nxdomain) return not_available("no such name (NXDOMAIN)");
    if (rcode != ns_r_noerror) return failed("the name server answered with rcode " + std::to_string(rcode));

    std::vector<std::string> owners{lower(strip_dot(qname))};
    SrvAnswer out;
    bool dot = false;
    std::size_t over = 0;
    std::uint32_t ttl = UINT32_MAX;
    auto drop = [&](const char* why) {
        if (out.error.empty()) out.error = std::string("dropped SRV records: ") + why;
    };
    const int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; ++i) {
        ns_rr rr{};
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return failed("malformed record in the DNS answer");
        if (ns_rr_class(rr) != ns_c_in) continue;
        const std::string owner = lower(strip_dot(ns_rr_name(rr)));
        if (std::find(owners.begin(), owners.end(), owner) == owners.end()) continue;
        const unsigned char* rd = ns_rr_rdata(rr);
        const std::size_t len = ns_rr_rdlen(rr);
        char name[NS_MAXDNAME];
        if (ns_rr_type(rr) == ns_t_cname) {
            const int used = ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd, name, sizeof name);
            if (used > 0 && static_cast<std::size_t>(used) == len && owners.size() < kMaxAliases)
                owners.push_back(lower(strip_dot(name)));
            continue;
        }
        if (ns_rr_type(rr) != ns_t_srv) continue;
        // priority(2) weight(2) port(2) target(>= 1: the root label)
        if (len < 7) {
            drop("RDATA too short");
            continue;
        }
        const int used = ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd + 6, name, sizeof name);
        if (used < 0 || static_cast<std::size_t>(used) != len - 6) {
            drop("malformed target name");
            continue;
        }
        const std::string_view target = strip_dot(name);
        if (target.empty()) {  // "." (RFC 2782: the service is decidedly not available)
            dot = true;
            continue;
        }
        if (!valid_host(target)) {
            drop("target is not a host name");
            continue;
        }
        SrvRecord r{get16(rd), get16(rd + 2), get16(rd + 4), std::string(target)};
        if (r.port == 0) {
            drop("port 0");
            continue;
        }
        const bool dup = std::any_of(out.records.begin(), out.records.end(), [&](const SrvRecord& o) {
            return o.port == r.port && lower(o.target) == lower(r.target);
        });
        if (dup) continue;
        if (out.records.size() >= kMaxSrvRecords) {
            ++over;
            continue;
        }
        ttl = std::min<std::uint32_t>(ttl, ns_rr_ttl(rr));
        out.records.push_back(std::move(r));
    }
    if (over > 0)
        out.error = "kept the first " + std::to_string(kMaxSrvRecords) + " SRV records, dropped " +
                    std::to_string(over);
    if (out.records.empty()) {
        std::string why = dot ? "the SRV record's target is \".\": the service is not available there"
                              : "no SRV record";
        if (!out.error.empty()) why += " (" + out.error + ")";
        return not_available(why);
    }
    out.kind = SrvAnswer::Kind::records;
    out.ttl = ttl;
    return out;
}

SrvAnswer query_srv(const std::string& name, int timeout_s, int attempts) {
    // `struct`: glibc also has a function named __res_state (behind the _res macro).
    auto state = std::make_unique<struct __res_state>();
    std::memset(state.get(), 0, sizeof(struct __res_state));
    if (res_ninit(state.get()) != 0) {
        res_nclose(state.get());
        return failed("cannot initialise the resolver (/etc/resolv.conf)");
    }
    const std::unique_ptr<struct __res_state, ResClose> opened(state.get());
    state->retrans = std::clamp(timeout_s, 1, 30);
    state->retry = std::clamp(attempts, 1, 5);
    std::vector<unsigned char> buf(kMaxDnsAnswer);
    int n = res_nquery(state.get(), name.c_str(), ns_c_in, ns_t_srv, buf.data(), static_cast<int>(buf.size()));
    if (n < 0) {
        switch (state->res_h_errno) {
        case HOST_NOT_FOUND: return not_available("no such name (NXDOMAIN)");
        case NO_DATA: return not_available("no SRV record");
        case TRY_AGAIN: return failed("no answer from the name servers of /etc/resolv.conf (timeout or SERVFAIL)");
        default: return failed("DNS lookup failed (h_errno " + std::to_string(state->res_h_errno) + ")");
        }
    }
    // res_nquery returns the full length when the answer did not fit (it cannot here).
    n = std::min(n, static_cast<int>(buf.size()));
    return parse_srv_answer(std::span<const unsigned char>(buf.data(), static_cast<std::size_t>(n)), name);
}

std::vector<SrvRecord> order_srv(std::vector<SrvRecord> records, const SrvRandom& random) {
    std::stable_sort(records.begin(), records.end(),
                     [](const SrvRecord& a, const SrvRecord& b) { return a.priority < b.priority; });
    std::vector<SrvRecord> out;
    out.reserve(records.size());
    for (auto group = records.begin(); group != records.end();) {
        auto end = std::find_if(group, records.end(), [&](const SrvRecord& r) { return r.priority != group->priority; });
        // RFC 2782: weight-0 records at the beginning of the list, then the running-sum pick.
        std::vector<SrvRecord> pool(group, end);
        std::stable_partition(pool.begin(), pool.end(), [](const SrvRecord& r) { return r.weight == 0; });
        while (!pool.empty()) {
            std::uint32_t sum = 0;
            for (const SrvRecord& r : pool) sum += r.weight;  // <= 64 * 65535: no overflow
            const std::uint32_t pick = std::min(random(sum), sum);
            std::uint32_t running = 0;
            auto chosen = pool.begin();
            for (auto it = pool.begin(); it != pool.end(); ++it) {
                running += it->weight;
                if (running >= pick) {
                    chosen = it;
                    break;
                }
            }
            out.push_back(std::move(*chosen));
            pool.erase(chosen);
        }
        group = end;
    }
    return out;
}

std::string_view srv_scheme(std::string_view srv_name) {
    const std::string first = lower(srv_name.substr(0, srv_name.find('.')));
    return first == "_ldaps" ? "ldaps" : "ldap";
}

std::string srv_target_uri(std::string_view scheme, const SrvRecord& record) {
    return std::string(scheme) + "://" + record.target + ":" + std::to_string(record.port);
}

std::string check_srv_name(std::string_view name) {
    const std::string_view n = strip_dot(name);
    if (n.size() > kMaxName) return "longer than a DNS name (253 bytes)";
    std::vector<std::string_view> labels;
    for (std::string_view rest = n;;) {
        const auto dot = rest.find('.');
        labels.push_back(rest.substr(0, dot));
        if (dot == std::string_view::npos) break;
        rest.remove_prefix(dot + 1);
    }
    for (std::string_view l : labels) {
        if (l.empty()) return "empty label (two dots in a row, or a leading dot)";
        if (l.size() > kMaxLabel) return "a label longer than 63 bytes";
        if (!std::all_of(l.begin(), l.end(), host_char)) return "characters other than letters, digits, - and _";
    }
    if (labels.size() < 3 || labels[0].size() < 2 || labels[0][0] != '_' || lower(labels[1]) != "_tcp")
        return "expected _service._tcp.domain, e.g. _ldap._tcp.example.com or _ldap._tcp.dc._msdcs.example.com";
    return {};
}

SrvDiscovery::SrvDiscovery(std::string name, Query query, SrvRandom random, Now now)
    : name_(std::move(name)),
      scheme_(srv_scheme(name_)),
      query_(std::move(query)),
      random_(std::move(random)),
      now_(std::move(now)) {}

SrvDiscovery::SrvDiscovery(std::string name, int timeout_s, int attempts)
    : SrvDiscovery(
          std::move(name), [timeout_s, attempts](const std::string& n) { return query_srv(n, timeout_s, attempts); },
          // Called under m_ only (targets()), so one generator serves every thread.
          [rng = std::make_shared<std::mt19937>(std::random_device{}())](std::uint32_t bound) {
              return std::uniform_int_distribution<std::uint32_t>(0, bound)(*rng);
          },
          [] { return Clock::now(); }) {}

void SrvDiscovery::refresh_if_due() {
    auto due = [&] {
        std::lock_guard lock(m_);
        return !looked_up_ || now_() >= due_;
    };
    if (!due()) return;
    std::unique_lock lookup(lookup_m_, std::defer_lock);
    bool have_list;
    {
        std::lock_guard lock(m_);
        have_list = looked_up_;
    }
    // With a list in hand, others keep using it while one thread looks up.
    if (have_list) {
        if (!lookup.try_lock()) return;
    } else {
        lookup.lock();
    }
    if (!due()) return;  // another thread just looked up

    SrvAnswer a = query_(name_);  // outside m_: takes up to the resolver's timeout

    std::lock_guard lock(m_);
    const auto now = now_();
    looked_ = now;
    looked_up_ = true;
    const std::string before = problem_;
    auto sorted = [](std::vector<SrvRecord> r) {
        std::sort(r.begin(), r.end(), [](const SrvRecord& x, const SrvRecord& y) {
            return std::tie(x.priority, x.weight, x.target, x.port) < std::tie(y.priority, y.weight, y.target, y.port);
        });
        return r;
    };
    switch (a.kind) {
    case SrvAnswer::Kind::records: {
        const auto ttl = std::clamp<std::chrono::seconds>(std::chrono::seconds(a.ttl), kMinTtl, kMaxTtl);
        due_ = now + ttl;
        problem_.clear();
        auto records = sorted(std::move(a.records));
        if (records != records_) {
            records_ = std::move(records);
            ++generation_;
            std::string list;
            for (const SrvRecord& r : records_)
                list += " " + r.target + ":" + std::to_string(r.port) + " (priority " + std::to_string(r.priority) +
                        ", weight " + std::to_string(r.weight) + ")";
            log::info("ldap: dns_srv ", log_safe(name_), ":", log_safe(list), ", TTL ", std::to_string(a.ttl), " s");
            if (!a.error.empty()) log::warning("ldap: dns_srv ", log_safe(name_), ": ", log_safe(a.error));
        }
        break;
    }
    case SrvAnswer::Kind::not_available:
        // The name server said so: there is nothing to fail over to.
        due_ = now + kMinTtl;
        problem_ = a.error;
        if (!records_.empty()) {
            records_.clear();
            ++generation_;
        }
        break;
    case SrvAnswer::Kind::failed:
        // Keep what was known: a DNS outage must not take the directory with it.
        due_ = now + kMinTtl;
        problem_ = a.error + (records_.empty() ? "" : "; using the targets found before");
        break;
    }
    if (!problem_.empty() && problem_ != before)
        log::warning("ldap: dns_srv ", log_safe(name_), ": ", log_safe(problem_));
}

SrvDiscovery::Targets SrvDiscovery::targets() {
    refresh_if_due();
    std::lock_guard lock(m_);
    Targets t;
    t.generation = generation_;
    t.problem = problem_;
    for (const SrvRecord& r : order_srv(records_, random_)) t.uris.push_back(srv_target_uri(scheme_, r));
    return t;
}

std::uint64_t SrvDiscovery::generation() {
    refresh_if_due();
    std::lock_guard lock(m_);
    return generation_;
}

void SrvDiscovery::all_failed() {
    std::lock_guard lock(m_);
    due_ = std::min(due_, looked_ + kMinTtl);
}

}  // namespace cvat::helper
