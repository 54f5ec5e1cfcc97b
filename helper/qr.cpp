// SPDX-License-Identifier: GPL-3.0-or-later
#include "qr.hpp"

#include <memory>
#include <string>

#include <qrencode.h>

namespace cvat::helper {
namespace {

struct QrFree {
    void operator()(QRcode* q) const noexcept { QRcode_free(q); }
};

// Two modules of light border: scanners need a quiet zone, terminals need the columns.
constexpr int kQuiet = 2;
// A URL longer than this makes a code too wide for an 80-column terminal even in half blocks.
constexpr std::size_t kMaxText = 512;

}  // namespace

Result<std::string> render_qr(std::string_view text, QrStyle style) {
    if (text.empty() || text.size() > kMaxText)
        return fail(ErrorCode::invalid_argument, "QR text empty or longer than 512 bytes");
    std::string copy(text);  // libqrencode wants a NUL-terminated string
    std::unique_ptr<QRcode, QrFree> qr(QRcode_encodeString(copy.c_str(), 0, QR_ECLEVEL_L, QR_MODE_8, 1));
    if (!qr) return fail(ErrorCode::internal, "libqrencode could not encode the URL");
    const int width = qr->width;
    const int size = width + 2 * kQuiet;
    auto dark = [&](int x, int y) {
        x -= kQuiet;
        y -= kQuiet;
        if (x < 0 || y < 0 || x >= width || y >= width) return false;
        return (qr->data[y * width + x] & 1) != 0;
    };
    std::string out;
    if (style == QrStyle::ascii) {
        out.reserve(static_cast<std::size_t>(size) * (2 * size + 1));
        for (int y = 0; y < size; ++y) {
            for (int x = 0; x < size; ++x) out += dark(x, y) ? "##" : "  ";
            out += '\n';
        }
        return out;
    }
    for (int y = 0; y < size; y += 2) {
        for (int x = 0; x < size; ++x) {
            bool top = dark(x, y), bottom = dark(x, y + 1);
            out += top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ";
        }
        out += '\n';
    }
    return out;
}

}  // namespace cvat::helper
