// SPDX-License-Identifier: GPL-3.0-or-later
// Login latency through the real path, one thread: N logins of one user with
// pam_authenticate (+ pam_acct_mgmt) via pam_start_confdir → pam_cvat.so → cvat-authd →
// slapd; and the floor: the same user search + group search + bind on one persistent libldap
// connection. Prints median, p90, p99 and mean of each.
//   cvat-bench-login CONFDIR SOCKET USER PASSWORD LDAP_URI BIND_DN BIND_PW BASE FILTER N
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ldap.h>
#include <security/pam_appl.h>

#include "pam_driver.hpp"

namespace {

struct Stats {
    double p50, p90, p99, mean;
};

Stats stats(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto at = [&v](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))]; };
    double sum = 0;
    for (double x : v) sum += x;
    return {at(0.5), at(0.9), at(0.99), sum / static_cast<double>(v.size())};
}

void print(const char* what, const Stats& s, std::size_t n) {
    std::printf("%-44s n=%-5zu median %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  mean %7.3f ms\n", what, n, s.p50,
                s.p90, s.p99, s.mean);
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 11) {
        std::fprintf(stderr, "usage: cvat-bench-login CONFDIR SOCKET USER PASSWORD LDAP_URI BIND_DN BIND_PW BASE FILTER N\n");
        return 64;
    }
    std::string confdir = argv[1], socket = argv[2], user = argv[3], password = argv[4];
    std::string uri = argv[5], bind_dn = argv[6], bind_pw = argv[7], base = argv[8], filter = argv[9];
    int n = std::atoi(argv[10]);

    auto run_pam = [&](bool account) {
        std::vector<double> t;
        for (int i = 0; i < n + 5; ++i) {
            cvat::test::PamCall call;
            call.confdir = confdir;
            call.user = user;
            call.answers = {password};
            call.module_args = "socket=" + socket;
            call.account = account;
            auto o = cvat::test::pam_login(call);
            if (o.authenticate != PAM_SUCCESS || (account && o.acct_mgmt != PAM_SUCCESS)) {
                std::fprintf(stderr, "login failed: %d/%d\n", o.authenticate, o.acct_mgmt);
                std::exit(1);
            }
            if (i >= 5) t.push_back(o.seconds * 1000);  // 5 warm-up logins
        }
        return t;
    };
    auto auth = run_pam(false);
    auto full = run_pam(true);

    // The floor: what any LDAP client must pay per login on a ready connection.
    LDAP* ld = nullptr;
    if (ldap_initialize(&ld, uri.c_str()) != LDAP_SUCCESS) return 1;
    int v3 = LDAP_VERSION3;
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    LDAP* user_ld = nullptr;
    ldap_initialize(&user_ld, uri.c_str());
    ldap_set_option(user_ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    berval svc{bind_pw.size(), bind_pw.data()};
    if (ldap_sasl_bind_s(ld, bind_dn.c_str(), LDAP_SASL_SIMPLE, &svc, nullptr, nullptr, nullptr) != LDAP_SUCCESS) return 1;
    std::vector<double> floor;
    for (int i = 0; i < n + 5; ++i) {
        double t0 = now_ms();
        LDAPMessage* res = nullptr;
        char* attrs[] = {const_cast<char*>("mail"), nullptr};
        ldap_search_ext_s(ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), attrs, 0, nullptr, nullptr, nullptr, 2, &res);
        LDAPMessage* e = ldap_first_entry(ld, res);
        char* dn = e ? ldap_get_dn(ld, e) : nullptr;
        if (dn == nullptr) return 1;
        berval cred{password.size(), password.data()};
        int rc = ldap_sasl_bind_s(user_ld, dn, LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
        std::string gfilter = std::string("(&(objectClass=group)(member=") + dn + "))";
        LDAPMessage* gres = nullptr;
        char* noattrs[] = {const_cast<char*>("1.1"), nullptr};
        ldap_search_ext_s(ld, base.c_str(), LDAP_SCOPE_SUBTREE, gfilter.c_str(), noattrs, 0, nullptr, nullptr, nullptr, 0, &gres);
        ldap_msgfree(gres);
        ldap_memfree(dn);
        ldap_msgfree(res);
        if (rc != LDAP_SUCCESS) return 1;
        if (i >= 5) floor.push_back(now_ms() - t0);
    }
    ldap_unbind_ext_s(ld, nullptr, nullptr);
    ldap_unbind_ext_s(user_ld, nullptr, nullptr);

    print("pam_authenticate through pam_cvat", stats(auth), auth.size());
    print("pam_authenticate + pam_acct_mgmt", stats(full), full.size());
    print("floor: libldap search + bind + group search", stats(floor), floor.size());
    return 0;
}
