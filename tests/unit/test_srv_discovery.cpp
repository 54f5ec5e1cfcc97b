// SPDX-License-Identifier: GPL-3.0-or-later
// DNS SRV discovery: the answer parser on hand-built packets (good, hostile, random), the
// RFC 2782 order with an injected RNG, and the TTL-driven cache with an injected clock.
#include "dns_srv.hpp"

#include "cmocka.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

using cvat::helper::check_srv_name;
using cvat::helper::kMaxSrvRecords;
using cvat::helper::order_srv;
using cvat::helper::parse_srv_answer;
using cvat::helper::SrvAnswer;
using cvat::helper::SrvDiscovery;
using cvat::helper::SrvRecord;
using cvat::helper::srv_scheme;
using cvat::helper::srv_target_uri;
using Kind = SrvAnswer::Kind;
using Bytes = std::vector<unsigned char>;

namespace {

constexpr const char* kName = "_ldap._tcp.example.com";

// A DNS message, written field by field (RFC 1035 §4.1).
struct Packet {
    Bytes b;
    void u8(unsigned v) { b.push_back(static_cast<unsigned char>(v)); }
    void u16(unsigned v) {
        u8((v >> 8) & 0xff);
        u8(v & 0xff);
    }
    void u32(std::uint32_t v) {
        u16(v >> 16);
        u16(v & 0xffff);
    }
    // Uncompressed name; "" or "." is the root.
    void name(std::string_view n) {
        while (!n.empty() && n != ".") {
            auto dot = n.find('.');
            std::string_view label = n.substr(0, dot);
            u8(static_cast<unsigned>(label.size()));
            b.insert(b.end(), label.begin(), label.end());
            if (dot == std::string_view::npos) break;
            n.remove_prefix(dot + 1);
        }
        u8(0);
    }
    void pointer(unsigned offset) { u16(0xc000 | offset); }
};

// Header + question for `qname` with `ancount` answers to follow; rcode and QR settable.
Packet header(unsigned ancount, unsigned rcode = 0, bool response = true, const char* qname = kName) {
    Packet p;
    p.u16(0x1234);
    p.u16((response ? 0x8000u : 0u) | 0x0100 | 0x0080 | rcode);  // QR, RD, RA, RCODE
    p.u16(1);
    p.u16(ancount);
    p.u16(0);
    p.u16(0);
    p.name(qname);
    p.u16(33);  // SRV
    p.u16(1);   // IN
    return p;
}

// An SRV answer owned by the question name (pointer to offset 12).
void srv(Packet& p, unsigned prio, unsigned weight, unsigned port, std::string_view target, std::uint32_t ttl = 300,
         unsigned cls = 1) {
    p.pointer(12);
    p.u16(33);
    p.u16(cls);
    p.u32(ttl);
    Packet rd;
    rd.u16(prio);
    rd.u16(weight);
    rd.u16(port);
    rd.name(target);
    p.u16(static_cast<unsigned>(rd.b.size()));
    p.b.insert(p.b.end(), rd.b.begin(), rd.b.end());
}

// A record with raw RDATA (any length claim).
void raw_rr(Packet& p, unsigned type, const Bytes& rdata, int rdlen = -1) {
    p.pointer(12);
    p.u16(type);
    p.u16(1);
    p.u32(60);
    p.u16(rdlen < 0 ? static_cast<unsigned>(rdata.size()) : static_cast<unsigned>(rdlen));
    p.b.insert(p.b.end(), rdata.begin(), rdata.end());
}

SrvAnswer parse(const Packet& p) { return parse_srv_answer(p.b, kName); }

void expect_record(const SrvRecord& r, unsigned prio, unsigned weight, unsigned port, const char* target) {
    assert_int_equal(r.priority, prio);
    assert_int_equal(r.weight, weight);
    assert_int_equal(r.port, port);
    assert_string_equal(r.target.c_str(), target);
}

// --- parsing --------------------------------------------------------------------------------

void parse_basic(void**) {
    Packet p = header(3);
    srv(p, 10, 5, 389, "ldap2.example.com.", 300);
    srv(p, 0, 100, 636, "LDAP1.Example.com", 120);
    srv(p, 10, 0, 3268, "gc.example.com", 600);
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::records));
    assert_int_equal(a.records.size(), 3);
    expect_record(a.records[0], 10, 5, 389, "ldap2.example.com");
    expect_record(a.records[1], 0, 100, 636, "LDAP1.Example.com");
    expect_record(a.records[2], 10, 0, 3268, "gc.example.com");
    assert_int_equal(a.ttl, 120);  // the smallest
    assert_true(a.error.empty());
    // The question name matches case-insensitively and with a trailing dot.
    assert_int_equal(parse_srv_answer(p.b, "_LDAP._tcp.EXAMPLE.com.").records.size(), 3);
}

void parse_compressed_target(void**) {
    Packet p = header(1);
    // Target "dc1" + pointer to "example.com" inside the question (offset 12 + 6 + 5).
    p.pointer(12);
    p.u16(33);
    p.u16(1);
    p.u32(60);
    p.u16(6 + 4 + 2);
    p.u16(0);
    p.u16(1);
    p.u16(389);
    p.u8(3);
    p.b.insert(p.b.end(), {'d', 'c', '1'});
    p.pointer(12 + 6 + 5);
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::records));
    expect_record(a.records.at(0), 0, 1, 389, "dc1.example.com");
}

void parse_cname_alias(void**) {
    Packet p = header(2);
    // _ldap._tcp.example.com CNAME _ldap._tcp.dc._msdcs.example.com, then the SRV there.
    Packet rd;
    rd.name("_ldap._tcp.dc._msdcs.example.com");
    raw_rr(p, 5, rd.b);
    const unsigned alias_at = static_cast<unsigned>(p.b.size() - rd.b.size());
    p.pointer(alias_at);
    p.u16(33);
    p.u16(1);
    p.u32(60);
    Packet s;
    s.u16(0);
    s.u16(0);
    s.u16(389);
    s.name("dc1.example.com");
    p.u16(static_cast<unsigned>(s.b.size()));
    p.b.insert(p.b.end(), s.b.begin(), s.b.end());
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::records));
    expect_record(a.records.at(0), 0, 0, 389, "dc1.example.com");
}

void parse_negative(void**) {
    // "." target: the service is decidedly not available (RFC 2782).
    Packet p = header(1);
    srv(p, 0, 0, 0, ".");
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::not_available));
    assert_non_null(std::strstr(a.error.c_str(), "\".\""));
    // NXDOMAIN, NOERROR without SRV records.
    assert_int_equal(static_cast<int>(parse(header(0, 3)).kind), static_cast<int>(Kind::not_available));
    a = parse(header(0));
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::not_available));
    assert_string_equal(a.error.c_str(), "no SRV record");
    // SERVFAIL, REFUSED, a query instead of a response: no knowledge either way.
    assert_int_equal(static_cast<int>(parse(header(0, 2)).kind), static_cast<int>(Kind::failed));
    assert_int_equal(static_cast<int>(parse(header(0, 5)).kind), static_cast<int>(Kind::failed));
    Packet q = header(1, 0, false);
    srv(q, 0, 0, 389, "a.example.com");
    assert_int_equal(static_cast<int>(parse(q).kind), static_cast<int>(Kind::failed));
}

void parse_drops_bad_records(void**) {
    Packet p = header(10);
    srv(p, 0, 0, 389, "good.example.com");
    srv(p, 0, 0, 0, "port0.example.com");                 // port 0
    srv(p, 0, 0, 389, "ev/il.example.com");               // '/' would end the URI's host
    srv(p, 0, 0, 389, "a b.example.com");                 // space
    srv(p, 0, 0, 389, "x@y.example.com");                 // userinfo in a URI
    srv(p, 0, 0, 389, "other.example.com", 60, 3);        // class CH: ignored
    raw_rr(p, 33, {0, 0, 0, 0, 1, 0x85});                 // RDATA 6 bytes: no target
    raw_rr(p, 33, {0, 0, 0, 0, 1, 0x85, 3, 'a', 'b'});    // label runs past the RDATA
    raw_rr(p, 33, {0, 0, 0, 0, 1, 0x85, 0xc0, 0x00});     // pointer into the header: a loop/garbage
    srv(p, 0, 0, 389, "GOOD.example.com");                // duplicate (case-insensitive)
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::records));
    assert_int_equal(a.records.size(), 1);
    expect_record(a.records[0], 0, 0, 389, "good.example.com");
    assert_non_null(std::strstr(a.error.c_str(), "dropped SRV records"));

    // A record owned by another name is not ours.
    Packet o = header(1, 0, true, "_ldap._tcp.other.com");
    srv(o, 0, 0, 389, "x.other.com");
    assert_int_equal(static_cast<int>(parse(o).kind), static_cast<int>(Kind::not_available));

    // A label of 64 bytes is not a host name (and not a DNS label at all).
    Packet l = header(1);
    srv(l, 0, 0, 389, std::string(64, 'a') + ".example.com");
    assert_int_equal(static_cast<int>(parse(l).kind), static_cast<int>(Kind::not_available));
}

void parse_hostile_packets(void**) {
    Packet p = header(2);
    srv(p, 0, 1, 389, "a.example.com");
    srv(p, 1, 1, 389, "b.example.com");
    assert_int_equal(parse(p).records.size(), 2);
    // Every truncation of a valid answer fails cleanly.
    for (std::size_t n = 0; n < p.b.size(); ++n) {
        SrvAnswer a = parse_srv_answer(std::span<const unsigned char>(p.b.data(), n), kName);
        if (a.kind == Kind::records) fail_msg("a %zu-byte prefix parsed", n);
    }
    // More answers claimed than present.
    Packet c = p;
    c.b[7] = 5;
    assert_int_equal(static_cast<int>(parse(c).kind), static_cast<int>(Kind::failed));
    // An RDLENGTH past the end.
    Packet r = header(1);
    raw_rr(r, 33, {0, 0, 0, 0, 1, 0x85, 0}, 4000);
    assert_int_equal(static_cast<int>(parse(r).kind), static_cast<int>(Kind::failed));
    // Longer than any DNS message.
    Bytes big(70000, 0);
    assert_int_equal(static_cast<int>(parse_srv_answer(big, kName).kind), static_cast<int>(Kind::failed));
    // Random bytes, and random damage to a good answer: no crash, no read outside (ASan).
    std::mt19937 rng(2782);
    for (int i = 0; i < 20000; ++i) {
        Bytes junk = p.b;
        if (i % 2 == 0) {
            junk.resize(rng() % 600);
            for (auto& byte : junk) byte = static_cast<unsigned char>(rng());
        } else {
            for (int k = 0; k < 4; ++k) junk[rng() % junk.size()] = static_cast<unsigned char>(rng());
        }
        SrvAnswer a = parse_srv_answer(junk, kName);
        for (const SrvRecord& rec : a.records) assert_true(rec.port != 0 && !rec.target.empty());
    }
}

void parse_record_cap(void**) {
    Packet p = header(100);
    for (int i = 0; i < 100; ++i) srv(p, 0, 1, 389, "s" + std::to_string(i) + ".example.com");
    SrvAnswer a = parse(p);
    assert_int_equal(static_cast<int>(a.kind), static_cast<int>(Kind::records));
    assert_int_equal(a.records.size(), kMaxSrvRecords);
    assert_string_equal(a.error.c_str(), "kept the first 64 SRV records, dropped 36");
}

// --- order ----------------------------------------------------------------------------------

std::vector<SrvRecord> recs(std::initializer_list<std::tuple<int, int, const char*>> l) {
    std::vector<SrvRecord> out;
    for (const auto& [prio, weight, target] : l)
        out.push_back(SrvRecord{static_cast<std::uint16_t>(prio), static_cast<std::uint16_t>(weight), 389, target});
    return out;
}

std::string targets(const std::vector<SrvRecord>& v) {
    std::string s;
    for (const auto& r : v) s += (s.empty() ? "" : " ") + r.target;
    return s;
}

void order_by_priority(void**) {
    auto low = [](std::uint32_t) { return 0u; };
    auto high = [](std::uint32_t bound) { return bound; };
    auto r = recs({{20, 100, "c"}, {0, 0, "a"}, {10, 5, "b"}, {0, 7, "a2"}});
    // random 0: the running sum reaches 0 at the first record, and weight-0 records come first.
    assert_string_equal(targets(order_srv(r, low)).c_str(), "a a2 b c");
    // random = sum: the last record of each priority.
    assert_string_equal(targets(order_srv(r, high)).c_str(), "a2 a b c");
    assert_true(order_srv({}, low).empty());
}

void order_weight_distribution(void**) {
    std::mt19937 rng(42);
    auto random = [&](std::uint32_t bound) { return std::uniform_int_distribution<std::uint32_t>(0, bound)(rng); };
    auto r = recs({{0, 1, "light"}, {0, 3, "heavy"}, {0, 0, "zero"}, {5, 50, "backup"}});
    std::map<std::string, int> first;
    constexpr int kRuns = 40000;
    for (int i = 0; i < kRuns; ++i) {
        auto o = order_srv(r, random);
        assert_string_equal(o.back().target.c_str(), "backup");  // priority beats weight
        ++first[o.front().target];
    }
    // sum 4, pick in [0,4]: zero 1/5, light 1/5, heavy 3/5 (RFC 2782's running sum).
    auto near = [&](const char* t, double want) {
        double got = first[t] / double(kRuns);
        std::fprintf(stderr, "# %s first %.3f (want %.3f)\n", t, got, want);
        assert_true(got > want - 0.02 && got < want + 0.02);
    };
    near("zero", 0.2);
    near("light", 0.2);
    near("heavy", 0.6);
}

// --- names ----------------------------------------------------------------------------------

void names_and_uris(void**) {
    assert_string_equal(std::string(srv_scheme("_ldaps._tcp.example.com")).c_str(), "ldaps");
    assert_string_equal(std::string(srv_scheme("_LDAPS._tcp.example.com")).c_str(), "ldaps");
    assert_string_equal(std::string(srv_scheme("_ldap._tcp.dc._msdcs.example.com")).c_str(), "ldap");
    assert_string_equal(std::string(srv_scheme("_gc._tcp.example.com")).c_str(), "ldap");
    assert_string_equal(srv_target_uri("ldaps", SrvRecord{0, 0, 636, "dc1.example.com"}).c_str(),
                        "ldaps://dc1.example.com:636");
    assert_true(check_srv_name("_ldap._tcp.example.com").empty());
    assert_true(check_srv_name("_ldap._tcp.dc._msdcs.ad.example.com.").empty());
    assert_false(check_srv_name("ldap.example.com").empty());
    assert_false(check_srv_name("_ldap._tcp").empty());
    assert_false(check_srv_name("_ldap._udp.example.com").empty());
    assert_false(check_srv_name("_ldap._tcp.exa%mple.com").empty());
    assert_false(check_srv_name("").empty());
}

// --- the cache ------------------------------------------------------------------------------

struct FakeDns {
    std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
    SrvAnswer next;
    int queries = 0;
    SrvDiscovery make() {
        return SrvDiscovery(
            kName,
            [this](const std::string& n) {
                assert_string_equal(n.c_str(), kName);
                ++queries;
                return next;
            },
            [](std::uint32_t) { return 0u; }, [this] { return now; });
    }
    void answer(std::vector<SrvRecord> r, std::uint32_t ttl) {
        next = SrvAnswer{Kind::records, std::move(r), ttl, {}};
    }
};

std::string uris(const SrvDiscovery::Targets& t) {
    std::string s;
    for (const auto& u : t.uris) s += (s.empty() ? "" : " ") + u;
    return s;
}

void discovery_ttl(void**) {
    using std::chrono::seconds;
    FakeDns dns;
    dns.answer(recs({{10, 0, "b.example.com"}, {0, 0, "a.example.com"}}), 60);
    SrvDiscovery d = dns.make();
    auto t = d.targets();
    assert_int_equal(dns.queries, 1);
    assert_string_equal(uris(t).c_str(), "ldap://a.example.com:389 ldap://b.example.com:389");
    const auto g1 = t.generation;
    assert_true(g1 != 0);
    // Within the TTL: no lookup.
    dns.now += seconds(59);
    d.targets();
    assert_int_equal(d.generation(), g1);
    assert_int_equal(dns.queries, 1);
    // After it: looked up; the same records in another order are the same generation.
    dns.answer(recs({{0, 0, "a.example.com"}, {10, 0, "b.example.com"}}), 0);
    dns.now += seconds(1);
    assert_int_equal(d.targets().generation, g1);
    assert_int_equal(dns.queries, 2);
    // TTL 0 counts as kMinTtl (5 s): no lookup per login.
    dns.now += seconds(4);
    d.targets();
    assert_int_equal(dns.queries, 2);
    // The record changed: a new generation.
    dns.answer(recs({{0, 0, "c.example.com"}}), 3600 * 24);
    dns.now += seconds(1);
    t = d.targets();
    assert_int_equal(dns.queries, 3);
    assert_true(t.generation != g1);
    assert_string_equal(uris(t).c_str(), "ldap://c.example.com:389");
    // A day's TTL is capped at kMaxTtl (1 h).
    dns.now += seconds(3599);
    d.targets();
    assert_int_equal(dns.queries, 3);
    dns.now += seconds(1);
    d.targets();
    assert_int_equal(dns.queries, 4);
}

void discovery_failures(void**) {
    using std::chrono::seconds;
    FakeDns dns;
    dns.answer(recs({{0, 0, "a.example.com"}}), 600);
    SrvDiscovery d = dns.make();
    const auto g1 = d.targets().generation;
    // All targets failed: looked up again, but not more than once per kMinTtl.
    dns.now += seconds(2);
    d.all_failed();
    d.targets();
    assert_int_equal(dns.queries, 1);
    dns.now += seconds(3);
    d.targets();
    assert_int_equal(dns.queries, 2);
    // The DNS server does not answer: the known targets stay, retried after kMinTtl.
    dns.next = SrvAnswer{Kind::failed, {}, 0, "timeout"};
    dns.now += seconds(600);
    auto t = d.targets();
    assert_int_equal(dns.queries, 3);
    assert_string_equal(uris(t).c_str(), "ldap://a.example.com:389");
    assert_int_equal(t.generation, g1);
    assert_non_null(std::strstr(t.problem.c_str(), "timeout; using the targets found before"));
    dns.now += seconds(4);
    d.targets();
    assert_int_equal(dns.queries, 3);
    // The name server says there is no such service: nothing left to try.
    dns.next = SrvAnswer{Kind::not_available, {}, 0, "no such name (NXDOMAIN)"};
    dns.now += seconds(1);
    t = d.targets();
    assert_int_equal(dns.queries, 4);
    assert_true(t.uris.empty());
    assert_true(t.generation != g1);
    assert_string_equal(t.problem.c_str(), "no such name (NXDOMAIN)");
    // _ldaps._tcp targets are ldaps://.
    SrvDiscovery s(
        "_ldaps._tcp.example.com", [](const std::string&) { return SrvAnswer{Kind::records, recs({{0, 0, "x.example.com"}}), 60, {}}; },
        [](std::uint32_t) { return 0u; }, [] { return std::chrono::steady_clock::time_point{}; });
    assert_string_equal(uris(s.targets()).c_str(), "ldaps://x.example.com:389");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_basic),
        cmocka_unit_test(parse_compressed_target),
        cmocka_unit_test(parse_cname_alias),
        cmocka_unit_test(parse_negative),
        cmocka_unit_test(parse_drops_bad_records),
        cmocka_unit_test(parse_hostile_packets),
        cmocka_unit_test(parse_record_cap),
        cmocka_unit_test(order_by_priority),
        cmocka_unit_test(order_weight_distribution),
        cmocka_unit_test(names_and_uris),
        cmocka_unit_test(discovery_ttl),
        cmocka_unit_test(discovery_failures),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
