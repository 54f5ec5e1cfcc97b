// SPDX-License-Identifier: GPL-3.0-or-later
// No user enumeration by timing (issue 6 item 6), through the real path: libpam →
// pam_cvat.so → cvat-authd → slapd. A known user with a wrong password and an unknown user
// must take the same time within noise. The known user's directory password is a slow hash
// ({CRYPT} SHA-512 with 100,000 rounds, tens of milliseconds per bind, as directories with
// PBKDF2 or Argon2 hashes behave): a daemon that answers an unknown name right after the
// search, or after a bind that the directory refuses without hashing, is told apart at once.
// 50 rounds, each a known and an unknown login back to back: the statistic is the median of
// the rounds' differences (unknown - known), so a change in the machine's speed during the run
// moves both halves of a round alike instead of one median more than the other.
#include "cmocka.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <security/pam_appl.h>
#include <sys/stat.h>

#include "ad_daemon.hpp"
#include "fixture.hpp"
#include "pam_driver.hpp"
#include "pam_expect.hpp"

using namespace cvat;
using namespace cvat::test;

namespace {

constexpr int kRounds = 50;
constexpr int kWarmup = 8;
const std::string kPassword = "Timing-Walter-Passw0rd";

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;
};
World* g = nullptr;

int setup(void**) {
    g = new World;
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad");
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void unknown_and_wrong_password_alike(void**) {
    const std::string dir = g->tmp.path() + "/daemon";
    ::mkdir(dir.c_str(), 0700);
    // walter's password as a slow {CRYPT} hash.
    assert_int_equal(run_program({on_path("sh"), "-c",
                                  "python3 -W ignore -c \"import crypt,sys; print(crypt.crypt(sys.argv[1], "
                                  "'\\$6\\$rounds=100000\\$cvattime\\$'))\" '" + kPassword + "' > '" + dir + "/hash'"},
                                 {}, 30),
                     0);
    std::string hash = read_file(dir + "/hash");
    hash.erase(hash.find_last_not_of("\n") + 1);
    assert_true(hash.rfind("$6$rounds=100000$", 0) == 0);
    const std::string walter = "CN=Walter Worker,CN=Users," + g->ad->base();
    write_file(dir + "/walter.ldif", "dn: " + walter + "\nchangetype: modify\nreplace: userPassword\nuserPassword: {CRYPT}" +
                                         hash + "\n");
    assert_int_equal(run_program({on_path("ldapmodify"), "-x", "-H", g->ad->uri(), "-D", g->ad->get("LDAP_ADMIN_DN"), "-w",
                                  g->ad->get("LDAP_ADMIN_PW"), "-f", dir + "/walter.ldif"},
                                 {}, 30),
                     0);
    // Throttling off: its delays would hide (or be) the difference.
    Daemon daemon(dir, ad_daemon_config(dir, *g->ad, "  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 0}}\n"));
    auto login = [&](const std::string& user, const std::string& password) {
        PamCall call;
        call.confdir = dir + "/pam";
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon.socket() + " timeout=30";
        call.account = false;
        return pam_login(call);
    };
    // The hash works (so the wrong passwords below are wrong, not unusable).
    auto ok = login("walter", kPassword);
    expect_pam("walter with the right password", ok.authenticate, PAM_SUCCESS);

    std::vector<double> known, unknown, diff;
    for (int i = -kWarmup; i < kRounds; ++i) {
        auto k = login("walter", "wrong-" + std::to_string(i));
        expect_pam("walter, wrong password", k.authenticate, PAM_AUTH_ERR);
        auto u = login("nosuch" + std::to_string(i + kWarmup), "wrong-" + std::to_string(i));
        expect_pam("unknown user", u.authenticate, PAM_USER_UNKNOWN);
        if (i < 0) continue;  // warm-up: connections, caches, the daemon's timing samples
        known.push_back(k.seconds * 1000);
        unknown.push_back(u.seconds * 1000);
        diff.push_back((u.seconds - k.seconds) * 1000);
    }
    const double mk = median(known), mu = median(unknown), md = median(diff);
    const double bound = std::max(2.0, 0.2 * mk);
    std::printf("# medians over %d rounds: known user, wrong password %.2f ms; unknown user %.2f ms; "
                "median of the rounds' differences %.2f ms (bound %.2f ms; difference of the medians %.2f ms)\n",
                kRounds, mk, mu, md, bound, mu - mk);
    std::printf("# known min/max %.2f/%.2f ms, unknown min/max %.2f/%.2f ms\n",
                *std::min_element(known.begin(), known.end()), *std::max_element(known.begin(), known.end()),
                *std::min_element(unknown.begin(), unknown.end()), *std::max_element(unknown.begin(), unknown.end()));
    // The slow hash must make a real difference to hide, or the test proves nothing.
    if (mk < 15) fail_msg("a wrong password took only %.2f ms: the slow hash is not in effect", mk);
    if (std::fabs(md) > bound)
        fail_msg("unknown user %.2f ms vs known user with a wrong password %.2f ms (median difference %.2f ms): "
                 "told apart by timing", mu, mk, md);
}

}  // namespace

int main() {
    require_program("slapd");
    require_program("ldapmodify");
    require_program("python3");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_and_wrong_password_alike),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
