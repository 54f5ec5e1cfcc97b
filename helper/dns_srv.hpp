// SPDX-License-Identifier: GPL-3.0-or-later
// DNS SRV discovery of LDAP servers (RFC 2782): lookup through the system resolver, a parser
// that trusts nothing in the answer, the priority/weight order, and a cache that honours the
// record's TTL. Time, randomness and the lookup itself are parameters, so tests control them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cvat::helper {

// SRV records kept from one answer; the rest are dropped (an answer that big is an error).
constexpr std::size_t kMaxSrvRecords = 64;
// A DNS message never exceeds this (RFC 1035 §4.2.2: 16-bit length over TCP).
constexpr std::size_t kMaxDnsAnswer = 65535;

// One SRV resource record (RFC 2782).
struct SrvRecord {
    std::uint16_t priority = 0;
    std::uint16_t weight = 0;
    std::uint16_t port = 0;
    std::string target;  // a host name without the trailing dot; only [A-Za-z0-9._-]
    bool operator==(const SrvRecord&) const = default;
};

// What one lookup gave.
struct SrvAnswer {
    enum class Kind {
        records,        // `records` holds at least one usable target
        not_available,  // NXDOMAIN, no SRV record, or only the "." target (RFC 2782)
        failed,         // no usable answer (timeout, SERVFAIL, malformed): keep what was known
    };
    Kind kind = Kind::failed;
    std::vector<SrvRecord> records;  // in answer order, duplicates (target, port) removed
    std::uint32_t ttl = 0;           // the smallest TTL of the kept records
    std::string error;               // words for the log: why not `records`, or what was dropped
};

// Parses a DNS response to an SRV query for `qname` (no trailing dot needed). Keeps SRV
// records of class IN owned by `qname` or by a CNAME alias of it in the answer; drops records
// with port 0, a malformed RDATA or a target outside [A-Za-z0-9._-]. Never reads outside
// `packet`.
SrvAnswer parse_srv_answer(std::span<const unsigned char> packet, std::string_view qname);

// Looks `name` up as SRV/IN through resolv.conf with res_nquery on a private resolver state
// (thread-safe). Each try waits `timeout_s` seconds, `attempts` tries per name server.
SrvAnswer query_srv(const std::string& name, int timeout_s, int attempts);

// A uniform random integer in [0, bound].
using SrvRandom = std::function<std::uint32_t(std::uint32_t bound)>;

// RFC 2782 order: priority ascending; within one priority, repeated weighted random
// selection (weight-0 records first in the running sum, so they are picked rarely).
std::vector<SrvRecord> order_srv(std::vector<SrvRecord> records, const SrvRandom& random);

// "ldaps" when the service label is _ldaps (e.g. _ldaps._tcp.example.com), else "ldap".
std::string_view srv_scheme(std::string_view srv_name);

// scheme://target:port
std::string srv_target_uri(std::string_view scheme, const SrvRecord& record);

// Why `name` is not an SRV name for LDAP (_service._tcp.domain, labels of [A-Za-z0-9_-],
// 253 bytes at most); empty when it is one.
std::string check_srv_name(std::string_view name);

// The targets of one SRV name, kept fresh: looked up on first use, again once the record's
// TTL has passed (at least kMinTtl, at most kMaxTtl apart), and again after all_failed().
// A failed lookup keeps the last good list and is retried after kMinTtl. Thread-safe; one
// caller looks up while the others use the list they had.
class SrvDiscovery {
public:
    using Query = std::function<SrvAnswer(const std::string& name)>;
    using Now = std::function<std::chrono::steady_clock::time_point()>;
    // A TTL of 0 must not mean a lookup per login; a huge one must not pin a stale list.
    static constexpr std::chrono::seconds kMinTtl{5};
    static constexpr std::chrono::seconds kMaxTtl{3600};

    struct Targets {
        std::vector<std::string> uris;  // best first (order_srv), scheme from srv_scheme()
        std::uint64_t generation = 0;   // changes whenever the set of records changes
        std::string problem;            // the last lookup's error, if it failed
    };

    SrvDiscovery(std::string name, Query query, SrvRandom random, Now now);
    // The system resolver, std::mt19937 seeded from std::random_device, steady_clock.
    SrvDiscovery(std::string name, int timeout_s, int attempts);

    // The targets to try now; looks the name up first when the list is due.
    Targets targets();
    // The generation after refreshing a due list (cheap when none is due).
    std::uint64_t generation();
    // Every target failed: the next call looks the name up again (at most once per kMinTtl).
    void all_failed();
    const std::string& name() const { return name_; }

private:
    void refresh_if_due();

    const std::string name_;
    const std::string scheme_;
    Query query_;
    SrvRandom random_;
    Now now_;
    std::mutex lookup_m_;  // held during a lookup
    std::mutex m_;         // guards everything below
    std::vector<SrvRecord> records_;
    std::chrono::steady_clock::time_point due_{};     // next lookup; {} = now
    std::chrono::steady_clock::time_point looked_{};  // last lookup
    bool looked_up_ = false;
    std::uint64_t generation_ = 0;
    std::string problem_;
};

}  // namespace cvat::helper
