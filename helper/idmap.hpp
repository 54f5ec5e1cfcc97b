// SPDX-License-Identifier: GPL-3.0-or-later
// Stable UIDs/GIDs derived from a directory's immutable ids, and the text forms of AD's
// binary objectSid/objectGUID. The map of assigned ids lives in CacheStore (cache_store.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "result.hpp"

namespace cvat::helper {

struct IdRange {
    std::uint32_t min, max;  // inclusive; min <= max
};

// Candidate k (k = 0, 1, 2, ...) for an immutable id: min + (H mod (max - min + 1)), where H
// is the first 8 bytes (big-endian) of SHA-256(immutable_id) for k == 0, of
// SHA-256(immutable_id + "#" + decimal k) otherwise. Pure: the same input gives the same ID on
// every host, so a lost cache re-derives the same IDs (collisions aside). A range with
// min > max gives min.
std::uint32_t id_candidate(std::string_view immutable_id, unsigned k, IdRange range);

// AD objectSid bytes (MS-DTYP §2.4.2.2: revision 1, sub-authority count <= 15, 48-bit
// big-endian authority, little-endian 32-bit sub-authorities, length exactly 8 + 4 * count)
// as "S-1-5-21-...". The authority is decimal below 2^32, else 0x-hex (MS-DTYP §2.4.2.1).
Result<std::string> sid_to_text(std::string_view bytes);

// AD objectGUID bytes (16) as lower-case 8-4-4-4-12 text, the first three fields read
// little-endian as AD (and Get-ADUser) prints them.
Result<std::string> guid_to_text(std::string_view bytes);

}  // namespace cvat::helper
