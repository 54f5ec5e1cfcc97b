// SPDX-License-Identifier: GPL-3.0-or-later
// QR codes for the device-flow prompt (libqrencode). The stock OpenSSH client escapes every
// non-ASCII byte of keyboard-interactive text, so over sshd the code is drawn in plain ASCII,
// two characters per module; half blocks only where the terminal is known to take UTF-8.
#pragma once

#include <string>
#include <string_view>

#include "result.hpp"

namespace cvat::helper {

enum class QrStyle {
    ascii,        // "##" per dark module, two spaces per light one; a row per module row
    half_blocks,  // U+2580/U+2584/U+2588: two module rows per text row
};

// Draws `text` (a URL) with a two-module quiet zone; lines end with '\n'. Fails when the
// text does not fit a QR code (libqrencode refuses it).
[[nodiscard]] Result<std::string> render_qr(std::string_view text, QrStyle style);

}  // namespace cvat::helper
