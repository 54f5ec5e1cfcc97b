// SPDX-License-Identifier: GPL-3.0-or-later
// Owners for libldap's C handles (private to the LDAP backend).
#pragma once

#include <memory>

#include <lber.h>
#include <ldap.h>

namespace cvat::helper::ldapraii {

struct Unbind {
    void operator()(LDAP* ld) const noexcept { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
using LdapPtr = std::unique_ptr<LDAP, Unbind>;

struct MsgFree {
    void operator()(LDAPMessage* m) const noexcept { ldap_msgfree(m); }
};
using MessagePtr = std::unique_ptr<LDAPMessage, MsgFree>;

// ldap_first_attribute()'s iterator: freed without its buffer (ber_free(b, 0), as ldap.h says).
struct BerFree {
    void operator()(BerElement* b) const noexcept { ber_free(b, 0); }
};
using BerPtr = std::unique_ptr<BerElement, BerFree>;

struct ValuesFree {
    void operator()(berval** v) const noexcept { ldap_value_free_len(v); }
};
using ValuesPtr = std::unique_ptr<berval*, ValuesFree>;

// Strings libldap allocates (ldap_get_dn, ldap_first_attribute, diagnostic messages).
struct MemFree {
    void operator()(char* p) const noexcept { ldap_memfree(p); }
};
using LdapString = std::unique_ptr<char, MemFree>;

struct ControlFree {
    void operator()(LDAPControl* c) const noexcept { ldap_control_free(c); }
};
using ControlPtr = std::unique_ptr<LDAPControl, ControlFree>;

struct ControlsFree {
    void operator()(LDAPControl** c) const noexcept { ldap_controls_free(c); }
};
using ControlsPtr = std::unique_ptr<LDAPControl*, ControlsFree>;

struct UrlFree {
    void operator()(LDAPURLDesc* u) const noexcept { ldap_free_urldesc(u); }
};
using UrlPtr = std::unique_ptr<LDAPURLDesc, UrlFree>;

// A berval whose bytes libldap allocated (the paged-results cookie).
struct BervalContentFree {
    void operator()(berval* b) const noexcept {
        if (b != nullptr && b->bv_val != nullptr) ber_memfree(b->bv_val);
    }
};

}  // namespace cvat::helper::ldapraii
