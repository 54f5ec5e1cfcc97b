// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the RFC 4533 values the group mirror's feed reads from the directory
// (helper/group_mirror.hpp): the Sync State Control on each entry and the Sync Info Message.
// Input: a selector byte, 'S' (state) or 'I' (info), then the value. Properties: a state read
// has a known state and a 16-byte entryUUID; an info read holds at most the allowed number of
// UUIDs, each 16 bytes; a refusal is a protocol or size error with words, never an internal one.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz.hpp"
#include "group_mirror.hpp"

#include <ldap.h>

using namespace cvat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 65536) return 0;
    std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    berval v{bytes.size(), bytes.data()};
    auto refused = [](const Error& e) {
        FUZZ_CHECK(e.code == ErrorCode::protocol || e.code == ErrorCode::too_large);
        FUZZ_CHECK(!e.detail.empty());
    };
    if (data[0] == 'S') {
        auto st = helper::parse_sync_state(v);
        if (st) {
            FUZZ_CHECK(st->state >= LDAP_SYNC_PRESENT && st->state <= LDAP_SYNC_DELETE);
            FUZZ_CHECK(st->uuid.size() == 16);
        } else {
            refused(st.error());
        }
    } else if (data[0] == 'I') {
        constexpr std::size_t kMax = 8;
        auto info = helper::parse_sync_info(v, kMax);
        if (info) {
            FUZZ_CHECK(info->uuids.size() <= kMax);
            for (const std::string& u : info->uuids) FUZZ_CHECK(u.size() == 16);
            if (info->kind != helper::SyncInfo::Kind::id_set) FUZZ_CHECK(info->uuids.empty());
        } else {
            refused(info.error());
        }
    }
    return 0;
}
