// SPDX-License-Identifier: GPL-3.0-or-later
// The LDAP servers to try: the targets of ldap.dns_srv (RFC 2782 order) first, then the
// server_uri list as written. Each server ever seen keeps its index for the life of the list,
// so connections and down marks can name a server by index while DNS changes underneath.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dns_srv.hpp"
#include "log.hpp"

namespace cvat::helper {

// Info: what the backend knows of one server URI (it has a `uri` member).
template <typename Info>
class ServerList {
public:
    using Describe = std::function<Info(const std::string& uri)>;
    // Bounds the servers remembered when a record keeps changing (each change may add up
    // to kMaxSrvRecords); targets beyond it are not used until a reload.
    static constexpr std::size_t kMaxServers = 1024;

    // `srv` may be null (no dns_srv).
    ServerList(const std::vector<std::string>& uris, std::unique_ptr<SrvDiscovery> srv, Describe describe)
        : srv_(std::move(srv)), describe_(std::move(describe)) {
        for (const std::string& uri : uris) static_.push_back(intern(uri));
    }

    // The server with index `i` (< size()); the reference stays valid (std::deque grows at
    // the end without moving its elements).
    const Info& operator[](std::size_t i) const {
        std::lock_guard lock(m_);
        return items_.at(i);
    }
    std::size_t size() const {
        std::lock_guard lock(m_);
        return items_.size();
    }
    bool empty() const { return size() == 0; }
    bool discovers() const { return srv_ != nullptr; }

    // Indices to try now, best first: SRV targets (looked up when due), then server_uri.
    // `generation` changes whenever the SRV targets change.
    std::vector<std::size_t> order(std::uint64_t* generation = nullptr, std::string* problem = nullptr) {
        std::vector<std::size_t> out;
        if (srv_) {
            SrvDiscovery::Targets t = srv_->targets();
            if (generation != nullptr) *generation = t.generation;
            if (problem != nullptr) *problem = t.problem;
            std::lock_guard lock(m_);
            for (const std::string& uri : t.uris)
                if (auto i = intern_locked(uri); i != kNone) out.push_back(i);
        } else if (generation != nullptr) {
            *generation = 0;
        }
        for (std::size_t i : static_)
            if (std::find(out.begin(), out.end(), i) == out.end()) out.push_back(i);
        return out;
    }
    std::uint64_t generation() { return srv_ ? srv_->generation() : 0; }
    // Every server failed: look the SRV name up again before the next try.
    void all_failed() {
        if (srv_) srv_->all_failed();
    }

private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    std::size_t intern(const std::string& uri) {
        std::lock_guard lock(m_);
        return intern_locked(uri);
    }
    std::size_t intern_locked(const std::string& uri) {
        if (auto it = index_.find(uri); it != index_.end()) return it->second;
        if (items_.size() >= kMaxServers) {
            log::error("ldap: more than ", std::to_string(kMaxServers), " LDAP servers seen; ignoring ",
                       log_safe(uri), " until a reload");
            return kNone;
        }
        items_.push_back(describe_(uri));
        index_.emplace(uri, items_.size() - 1);
        return items_.size() - 1;
    }

    std::unique_ptr<SrvDiscovery> srv_;
    Describe describe_;
    std::vector<std::size_t> static_;  // server_uri, in order
    mutable std::mutex m_;
    std::deque<Info> items_;                      // guarded by m_; elements never move
    std::map<std::string, std::size_t> index_;    // uri -> index; guarded by m_
};

}  // namespace cvat::helper
