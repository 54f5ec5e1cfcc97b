// SPDX-License-Identifier: GPL-3.0-or-later
// HTTPS client over libcurl (see http.hpp).
//
// Secret handling: form bodies and the Authorization header are built in zeroing buffers.
// Values are percent-encoded here rather than with curl_easy_escape, which returns a malloc'd
// copy that would have to be wiped before curl_free; encoding straight into the zeroing buffer
// leaves no temporary at all. Basic auth is our own header, not CURLOPT_USERPWD (which keeps
// copies in the handle that curl frees unwiped); curl_slist_append copies the header, so the
// list's nodes are wiped before they are freed. The body goes out with CURLOPT_POSTFIELDS
// (curl reads our buffer, no copy of its own as with COPYPOSTFIELDS).
#include "http.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "log.hpp"

namespace cvat::helper {

namespace {

using SecretBuf = std::vector<char, ZeroingAllocator<char>>;

struct CurlFree {
    void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlFree>;

// Frees a header list after wiping every node's text (one of them may be Authorization).
struct SlistWipeFree {
    void operator()(curl_slist* list) const noexcept {
        for (curl_slist* n = list; n != nullptr; n = n->next)
            if (n->data != nullptr) wipe(n->data, std::strlen(n->data));
        curl_slist_free_all(list);
    }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistWipeFree>;

std::once_flag g_init_once;
CURLcode g_init_rc = CURLE_FAILED_INIT;

// curl_global_init is not thread-safe before 7.84's lock, and must run before any thread
// uses curl: once, here.
bool curl_ready() {
    std::call_once(g_init_once, [] { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    return g_init_rc == CURLE_OK;
}

// Collects the body into a zeroing buffer; refuses more than `max` bytes.
struct Sink {
    SecretBuf data;
    std::size_t max = 0;
    bool too_large = false;
};

extern "C" std::size_t write_body(char* ptr, std::size_t size, std::size_t nmemb, void* user) noexcept {
    auto* sink = static_cast<Sink*>(user);
    const std::size_t n = size * nmemb;
    if (n > sink->max - std::min(sink->max, sink->data.size())) {
        sink->too_large = true;
        return 0;  // curl aborts with CURLE_WRITE_ERROR
    }
    try {
        sink->data.insert(sink->data.end(), ptr, ptr + n);
    } catch (...) {
        return 0;
    }
    return n;
}

// Words for a transport failure; never a field value.
std::string describe(CURLcode rc, const char* errbuf) {
    std::string text = curl_easy_strerror(rc);
    if (errbuf != nullptr && *errbuf != '\0') text += " (" + log_safe(errbuf) + ")";
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
        text += "; check ca_file and that the certificate names the host of the URL";
        break;
    default:
        break;
    }
    return text;
}

// The fixed options of every request.
Result<CurlPtr> make_handle(const std::string& url, const HttpOptions& o, char* errbuf, Sink& sink) {
    if (!curl_ready()) return fail(ErrorCode::internal, "libcurl could not be initialised");
    CurlPtr h(curl_easy_init());
    if (!h) return fail(ErrorCode::internal, "curl_easy_init failed");
    CURL* c = h.get();
    bool ok = true;
    auto set = [&](CURLcode rc) { ok = ok && rc == CURLE_OK; };
    set(curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf));
    set(curl_easy_setopt(c, CURLOPT_URL, url.c_str()));
    set(curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https"));
    set(curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L));
    set(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L));  // worker threads: no SIGALRM for DNS timeouts
    set(curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L));
    set(curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L));
    set(curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
    if (!o.ca_file.empty()) set(curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str()));
    set(curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::max(1, o.connect_timeout_ms))));
    set(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max(1, o.timeout_ms))));
    // A Content-Length over the cap is refused before the body arrives; the write callback
    // catches chunked answers.
    set(curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(o.max_body)));
    set(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body));
    set(curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink));
    set(curl_easy_setopt(c, CURLOPT_USERAGENT, "cvat-authd/" CVAT_AUTH_VERSION));
    // No cookie engine (never set CURLOPT_COOKIEFILE), no .netrc, no compressed bodies (the
    // size cap then holds for what we parse).
    set(curl_easy_setopt(c, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_IGNORED)));
    if (!ok) return fail(ErrorCode::internal, "cannot set libcurl options");
    sink.max = o.max_body;
    return h;
}

Result<HttpResponse> perform(CURL* c, const std::string& url, const HttpOptions& o, char* errbuf, Sink& sink,
                             curl_slist* headers) {
    if (curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK)
        return fail(ErrorCode::internal, "cannot set libcurl options");
    const CURLcode rc = curl_easy_perform(c);
    const std::string where = log_safe(url) + ": ";
    if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return fail(ErrorCode::too_large, where + "answer larger than " + std::to_string(o.max_body) + " bytes");
    if (rc != CURLE_OK) {
        switch (rc) {
        case CURLE_OPERATION_TIMEDOUT:
            return fail(ErrorCode::unavailable, where + "no answer within " + std::to_string(o.timeout_ms) +
                                                    " ms (connect limit " + std::to_string(o.connect_timeout_ms) +
                                                    " ms): " + describe(rc, errbuf));
        case CURLE_OUT_OF_MEMORY:
            return fail(ErrorCode::internal, where + describe(rc, errbuf));
        default:
            // Resolve, connect, TLS, reset, bad URL, unsupported scheme: the IdP cannot be used.
            return fail(ErrorCode::unavailable, where + describe(rc, errbuf));
        }
    }
    HttpResponse r;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char* ct = nullptr;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != nullptr) r.content_type = ct;
    if (o.sensitive)
        r.secret_body = Secret(std::string_view(sink.data.data(), sink.data.size()));
    else
        r.body.assign(sink.data.begin(), sink.data.end());
    return r;
}

// Appends "Name: value" built in a zeroing buffer to a header list (curl copies it; the list's
// deleter wipes the copy).
bool append_header(SlistPtr& list, const SecretBuf& line) {
    curl_slist* n = curl_slist_append(list.get(), line.data());
    if (n == nullptr) return false;
    (void)list.release();
    list.reset(n);
    return true;
}

SlistPtr accept_json() {
    return SlistPtr(curl_slist_append(nullptr, "Accept: application/json"));
}

// Adds "Authorization: Basic base64(plain)" (plain: "user:password", already encoded as the
// scheme wants); every copy of the credentials stays in wiped buffers.
Result<void> append_basic_auth(SlistPtr& headers, const SecretBuf& plain) {
    SecretBuf line;
    constexpr std::string_view kPrefix = "Authorization: Basic ";
    const std::size_t b64 = 4 * ((plain.size() + 2) / 3);
    line.resize(kPrefix.size() + b64 + 1);
    std::memcpy(line.data(), kPrefix.data(), kPrefix.size());
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(line.data() + kPrefix.size()),
                                  reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
    if (n < 0 || static_cast<std::size_t>(n) != b64) return fail(ErrorCode::internal, "base64 failed");
    line[kPrefix.size() + b64] = '\0';
    if (!append_header(headers, line)) return fail(ErrorCode::internal, "out of memory");
    return {};
}

}  // namespace

void form_encode_append(std::string_view value, SecretBuf& out) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char ch : value) {
        const auto b = static_cast<unsigned char>(ch);
        if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' || b == '.' ||
            b == '_' || b == '~') {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHex[b >> 4]);
            out.push_back(kHex[b & 0xF]);
        }
    }
}

Result<HttpResponse> http_get(const std::string& url, const HttpOptions& options) {
    try {
        char errbuf[CURL_ERROR_SIZE] = {};
        Sink sink;
        auto h = make_handle(url, options, errbuf, sink);
        if (!h) return tl::unexpected<Error>(h.error());
        SlistPtr headers = accept_json();
        if (!headers) return fail(ErrorCode::internal, "out of memory");
        return perform(h->get(), url, options, errbuf, sink, headers.get());
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("HTTP GET: ") + e.what());
    }
}

Result<HttpResponse> http_get_bearer(const std::string& url, const Secret& token, const HttpOptions& options) {
    try {
        char errbuf[CURL_ERROR_SIZE] = {};
        Sink sink;
        auto h = make_handle(url, options, errbuf, sink);
        if (!h) return tl::unexpected<Error>(h.error());
        SlistPtr headers = accept_json();
        if (!headers) return fail(ErrorCode::internal, "out of memory");
        SecretBuf line;
        constexpr std::string_view kPrefix = "Authorization: Bearer ";
        line.reserve(kPrefix.size() + token.size() + 1);
        line.insert(line.end(), kPrefix.begin(), kPrefix.end());
        // A token is base64url and dots; anything that could break the header line is refused.
        for (char ch : token.view())
            if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
                return fail(ErrorCode::invalid_argument, "access token holds bytes not allowed in a header");
        line.insert(line.end(), token.view().begin(), token.view().end());
        line.push_back('\0');
        if (!append_header(headers, line)) return fail(ErrorCode::internal, "out of memory");
        return perform(h->get(), url, options, errbuf, sink, headers.get());
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("HTTP GET: ") + e.what());
    }
}

Result<HttpResponse> http_post_form(const std::string& url, const std::vector<FormField>& fields,
                                    const BasicAuth* basic, const HttpOptions& options) {
    try {
        char errbuf[CURL_ERROR_SIZE] = {};
        Sink sink;
        auto h = make_handle(url, options, errbuf, sink);
        if (!h) return tl::unexpected<Error>(h.error());
        CURL* c = h->get();

        SecretBuf body;
        for (const FormField& f : fields) {
            if (!body.empty()) body.push_back('&');
            form_encode_append(f.name, body);
            body.push_back('=');
            form_encode_append(f.secret != nullptr ? f.secret->view() : std::string_view(f.value), body);
        }
        body.push_back('\0');  // POSTFIELDS wants a pointer; the size below excludes the NUL

        SlistPtr headers = accept_json();
        if (!headers) return fail(ErrorCode::internal, "out of memory");
        SecretBuf content_type;
        constexpr std::string_view kForm = "Content-Type: application/x-www-form-urlencoded";
        content_type.assign(kForm.begin(), kForm.end());
        content_type.push_back('\0');
        if (!append_header(headers, content_type)) return fail(ErrorCode::internal, "out of memory");

        if (basic != nullptr) {
            // RFC 6749 §2.3.1: form-encode client_id and secret, join with ':', base64.
            SecretBuf plain;
            form_encode_append(basic->user, plain);
            plain.push_back(':');
            if (basic->password != nullptr) form_encode_append(basic->password->view(), plain);
            if (auto added = append_basic_auth(headers, plain); !added) return tl::unexpected(added.error());
        }

        bool ok = curl_easy_setopt(c, CURLOPT_POST, 1L) == CURLE_OK &&
                  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size() - 1)) ==
                      CURLE_OK &&
                  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data()) == CURLE_OK;
        if (!ok) return fail(ErrorCode::internal, "cannot set libcurl options");
        auto r = perform(c, url, options, errbuf, sink, headers.get());
        h->reset();  // the handle points into `body` and `headers`: gone before they are
        return r;
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("HTTP POST: ") + e.what());
    }
}

Result<HttpResponse> http_post_soap(const std::string& url, std::string_view envelope, std::string_view user,
                                    const Secret* password, const HttpOptions& options) {
    try {
        for (char ch : user)
            if (ch == ':' || static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
                return fail(ErrorCode::invalid_argument, "the user name holds ':' or a control byte");
        char errbuf[CURL_ERROR_SIZE] = {};
        Sink sink;
        auto h = make_handle(url, options, errbuf, sink);
        if (!h) return tl::unexpected<Error>(h.error());
        CURL* c = h->get();
        SlistPtr headers(curl_slist_append(nullptr, "Content-Type: text/xml; charset=utf-8"));
        if (!headers) return fail(ErrorCode::internal, "out of memory");
        // SAML 2.0 Bindings §3.2.2.3 (the ECP profile uses this SOAPAction).
        for (const char* fixed : {"SOAPAction: \"http://www.oasis-open.org/committees/security\"",
                                  "Accept: text/xml, application/vnd.paos+xml", "Expect:"}) {
            SecretBuf line(fixed, fixed + std::strlen(fixed) + 1);
            if (!append_header(headers, line)) return fail(ErrorCode::internal, "out of memory");
        }
        if (password != nullptr) {
            SecretBuf plain(user.begin(), user.end());
            plain.push_back(':');
            plain.insert(plain.end(), password->view().begin(), password->view().end());
            if (auto added = append_basic_auth(headers, plain); !added) return tl::unexpected(added.error());
        }
        bool ok = curl_easy_setopt(c, CURLOPT_POST, 1L) == CURLE_OK &&
                  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(envelope.size())) ==
                      CURLE_OK &&
                  curl_easy_setopt(c, CURLOPT_POSTFIELDS, envelope.data()) == CURLE_OK;
        if (!ok) return fail(ErrorCode::internal, "cannot set libcurl options");
        auto r = perform(c, url, options, errbuf, sink, headers.get());
        h->reset();
        return r;
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("HTTP POST: ") + e.what());
    }
}

}  // namespace cvat::helper
