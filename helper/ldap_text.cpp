// SPDX-License-Identifier: GPL-3.0-or-later
// RFC 4515 filter escaping and RFC 4514 DN normalisation (see ldap_text.hpp).
#include "ldap_text.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace cvat::helper {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex_escape(std::string& out, unsigned char c) {
    out.push_back('\\');
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0x0f]);
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// The `%(user)s` placeholder of Django's LDAPSearch (python %-formatting with a dict).
constexpr std::string_view kUserPlaceholder = "%(user)s";

// Attribute type names and OIDs that mean the same thing (RFC 4519, RFC 4514 §3): the
// canonical form uses the short name so "commonName=x" and "2.5.4.3=x" equal "cn=x".
struct TypeAlias {
    std::string_view alias;
    std::string_view canonical;
};
constexpr TypeAlias kTypeAliases[] = {
    {"2.5.4.3", "cn"},
    {"commonname", "cn"},
    {"0.9.2342.19200300.100.1.25", "dc"},
    {"domaincomponent", "dc"},
    {"0.9.2342.19200300.100.1.1", "uid"},
    {"userid", "uid"},
    {"2.5.4.11", "ou"},
    {"organizationalunitname", "ou"},
    {"2.5.4.10", "o"},
    {"organizationname", "o"},
    {"2.5.4.6", "c"},
    {"countryname", "c"},
    {"2.5.4.7", "l"},
    {"localityname", "l"},
    {"2.5.4.8", "st"},
    {"stateorprovincename", "st"},
    {"2.5.4.9", "street"},
    {"streetaddress", "street"},
};

struct Ava {
    std::string type;   // canonical, lower case
    std::string value;  // canonical escaped text (or #hex, lower case)
    bool operator<(const Ava& o) const {
        return type != o.type ? type < o.type : value < o.value;
    }
};

// Recursive-descent parser over the DN text; positions are byte offsets.
class DnParser {
public:
    explicit DnParser(std::string_view text) : s_(text) {}

    Result<std::string> run() {
        skip_spaces();
        if (at_end()) return std::string();  // the empty DN (RFC 4514 §3)
        std::string out;
        for (;;) {
            auto rdn = parse_rdn();
            if (!rdn) return tl::unexpected(rdn.error());
            if (!out.empty()) out.push_back(',');
            out += *rdn;
            if (at_end()) break;
            if (s_[pos_] != ',') return error("expected ',' between RDNs");
            ++pos_;
        }
        return out;
    }

private:
    bool at_end() const noexcept { return pos_ >= s_.size(); }
    void skip_spaces() noexcept {
        while (!at_end() && s_[pos_] == ' ') ++pos_;
    }

    tl::unexpected<Error> error(const std::string& what) const {
        return fail(ErrorCode::invalid_argument,
                    "malformed DN at offset " + std::to_string(pos_) + ": " + what);
    }

    Result<std::string> parse_rdn() {
        std::vector<Ava> avas;
        for (;;) {
            auto ava = parse_ava();
            if (!ava) return tl::unexpected(ava.error());
            avas.push_back(std::move(*ava));
            if (!at_end() && s_[pos_] == '+') {
                ++pos_;
                continue;
            }
            break;
        }
        std::sort(avas.begin(), avas.end());
        std::string out;
        for (const Ava& a : avas) {
            if (!out.empty()) out.push_back('+');
            out += a.type;
            out.push_back('=');
            out += a.value;
        }
        return out;
    }

    Result<Ava> parse_ava() {
        skip_spaces();
        auto type = parse_type();
        if (!type) return tl::unexpected(type.error());
        skip_spaces();
        if (at_end() || s_[pos_] != '=') return error("expected '=' after attribute type");
        ++pos_;
        skip_spaces();
        Ava ava;
        ava.type = std::move(*type);
        auto value = (!at_end() && s_[pos_] == '#') ? parse_hex_value() : parse_string_value();
        if (!value) return tl::unexpected(value.error());
        ava.value = std::move(*value);
        return ava;
    }

    // attributeType = descr / numericoid (RFC 4512 §1.4)
    Result<std::string> parse_type() {
        std::size_t start = pos_;
        if (at_end()) return error("expected an attribute type");
        std::string type;
        if (is_alpha(s_[pos_])) {
            while (!at_end() && (is_alpha(s_[pos_]) || is_digit(s_[pos_]) || s_[pos_] == '-'))
                type.push_back(ascii_lower(s_[pos_++]));
        } else if (is_digit(s_[pos_])) {
            bool need_digit = true;
            while (!at_end() && (is_digit(s_[pos_]) || s_[pos_] == '.')) {
                if (s_[pos_] == '.') {
                    if (need_digit) return error("empty OID component");
                    need_digit = true;
                } else {
                    need_digit = false;
                }
                type.push_back(s_[pos_++]);
            }
            if (need_digit) return error("OID ends with '.'");
            if (type.find('.') == std::string::npos) return error("attribute type is a bare number");
        } else {
            return error("expected an attribute type");
        }
        if (pos_ == start) return error("expected an attribute type");
        for (const TypeAlias& a : kTypeAliases)
            if (type == a.alias) return std::string(a.canonical);
        return type;
    }

    // hexstring = SHARP 1*hexpair: a BER value, kept as-is (lower-cased).
    Result<std::string> parse_hex_value() {
        ++pos_;  // '#'
        std::string out = "#";
        while (!at_end() && hex_value(s_[pos_]) >= 0) {
            if (pos_ + 1 >= s_.size() || hex_value(s_[pos_ + 1]) < 0)
                return error("odd number of hex digits in #value");
            out.push_back(ascii_lower(s_[pos_]));
            out.push_back(ascii_lower(s_[pos_ + 1]));
            pos_ += 2;
        }
        if (out.size() == 1) return error("'#' not followed by hex digits");
        skip_spaces();
        if (!at_end() && s_[pos_] != ',' && s_[pos_] != '+')
            return error("unexpected character after #value");
        return out;
    }

    // string = [ (leadchar / pair) [ *( stringchar / pair ) ( trailchar / pair ) ] ]
    // The decoded value is compared the way caseIgnoreMatch compares (RFC 4518 §2.6.1):
    // ASCII case folded, leading and trailing spaces dropped, inner runs of spaces as one.
    Result<std::string> parse_string_value() {
        std::string raw;  // decoded bytes
        while (!at_end()) {
            char c = s_[pos_];
            if (c == ',' || c == '+') break;
            if (c == '\\') {
                if (pos_ + 1 >= s_.size()) return error("'\\' at end of DN");
                char n = s_[pos_ + 1];
                int hi = hex_value(n);
                if (hi >= 0) {
                    if (pos_ + 2 >= s_.size() || hex_value(s_[pos_ + 2]) < 0)
                        return error("'\\' followed by a single hex digit");
                    raw.push_back(static_cast<char>((hi << 4) | hex_value(s_[pos_ + 2])));
                    pos_ += 3;
                } else if (n == ' ' || n == '"' || n == '#' || n == '+' || n == ',' ||
                           n == ';' || n == '<' || n == '=' || n == '>' || n == '\\') {
                    raw.push_back(n);
                    pos_ += 2;
                } else {
                    return error("invalid escape '\\" + std::string(1, n) + "'");
                }
                continue;
            }
            if (c == '"' || c == ';' || c == '<' || c == '>' || c == '\0')
                return error("unescaped special character in value");
            raw.push_back(c);
            ++pos_;
        }
        std::string folded;
        folded.reserve(raw.size());
        for (char ch : raw) {
            if (ch == ' ' && (folded.empty() || folded.back() == ' ')) continue;
            folded.push_back(ascii_lower(ch));
        }
        if (!folded.empty() && folded.back() == ' ') folded.pop_back();
        return escape_dn_value(folded);
    }

    std::string_view s_;
    std::size_t pos_ = 0;
};

}  // namespace

std::string escape_filter_value(std::string_view value) {
    std::string out;
    out.reserve(value.size() + 8);
    for (char ch : value) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 || c >= 0x80 || c == 0x7f)
            append_hex_escape(out, c);
        else
            out.push_back(ch);
    }
    return out;
}

namespace {

// Python %-formatting as Django applies it: `%(user)s` is the value, `%%` a literal '%';
// any other '%' would raise in Python, so it is refused here too.
Result<std::string> fill_user_filter(std::string_view filter_template, const std::string& escaped) {
    std::string out;
    bool placed = false;
    for (std::size_t i = 0; i < filter_template.size();) {
        char c = filter_template[i];
        if (c != '%') {
            out.push_back(c);
            ++i;
            continue;
        }
        if (filter_template.substr(i, kUserPlaceholder.size()) == kUserPlaceholder) {
            out += escaped;
            placed = true;
            i += kUserPlaceholder.size();
        } else if (i + 1 < filter_template.size() && filter_template[i + 1] == '%') {
            out.push_back('%');
            i += 2;
        } else {
            return fail(ErrorCode::invalid_argument,
                        "user filter: '%' at offset " + std::to_string(i) +
                            " is neither %(user)s nor %%");
        }
    }
    if (!placed) return fail(ErrorCode::invalid_argument, "user filter has no %(user)s");
    return out;
}

}  // namespace

Result<std::string> expand_user_filter(std::string_view filter_template, std::string_view user) {
    return fill_user_filter(filter_template, escape_filter_value(user));
}

Result<std::string> any_user_filter(std::string_view filter_template) {
    return fill_user_filter(filter_template, "*");
}

std::string escape_dn_value(std::string_view value) {
    std::string out;
    out.reserve(value.size() + 8);
    for (std::size_t i = 0; i < value.size(); ++i) {
        auto c = static_cast<unsigned char>(value[i]);
        bool edge_space = c == ' ' && (i == 0 || i + 1 == value.size());
        if (c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\' ||
            c == '=' || edge_space || (c == '#' && i == 0)) {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20 || c == 0x7f) {
            append_hex_escape(out, c);  // NUL and controls: always as a hex pair
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

Result<std::string> normalize_dn(std::string_view dn) {
    try {
        return DnParser(dn).run();
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("normalize_dn: ") + e.what());
    }
}

}  // namespace cvat::helper
