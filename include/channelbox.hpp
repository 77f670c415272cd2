/*
 * channelbox.hpp: the channelbox C API for C++17, header-only.
 *
 * A thin layer over channelbox.h that adds no behaviour of its own:
 *
 * - RAII handles, move-only: `channelbox::hub` (cbx_hub_free),
 *   `channelbox::connection` (cbx_conn_close) and `channelbox::message`
 *   (cbx_message_free). Nothing leaks when an exception unwinds.
 * - Errors are exceptions: every failed call throws `channelbox::error`,
 *   which carries the `cbx_result` code, its name (`CBX_INVALID_JSON`) and
 *   the detail from `cbx_last_error()`. A connection that the hub closed
 *   and that has been drained throws `channelbox::connection_closed` (a
 *   `channelbox::error` with code `CBX_CLOSED`) from its receives.
 *   "Nothing pending" is not an error: `recv` returns an empty optional and
 *   `recv_batch` an empty vector.
 * - Strings are `std::string_view` (copied once to add the NUL the C API
 *   needs; a view holding a NUL byte is refused with
 *   `CBX_INVALID_ARGUMENT`), payloads a `channelbox::bytes_view` (pointer
 *   and size; built from a string, a string literal, a vector of bytes or a
 *   pointer and a size). JSON answers (history, groups, stats) are
 *   `std::string`.
 *
 * Lifetimes: a `connection` must not outlive the `hub` that opened it (its
 * destructor releases its id on that hub). A `message` outlives everything:
 * its data stays valid until the message is destroyed. As in C, a hub's
 * and a connection's member functions may be called from many threads at
 * once; destroying, moving or assigning a handle may not race with its use.
 *
 *     channelbox::hub hub(R"({"history_max_messages": 100})");
 *     auto alice = hub.open("alice");
 *     alice.join("lobby");
 *     hub.group_send("lobby", channelbox::kind::json, R"({"text":"hi"})",
 *                    channelbox::save_history);
 *     if (auto m = alice.recv(1000)) std::cout << m->text() << "\n";
 *
 * Build: `c++ -std=c++17 app.cpp $(pkg-config --cflags --libs channelbox)`.
 */

#ifndef CHANNELBOX_HPP
#define CHANNELBOX_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "channelbox.h"

namespace channelbox {

/** A connection id: unique for the hub's life, never reused. */
using conn_id = std::uint64_t;

/** What a send did: delivered, dropped, offset, disconnected. */
using send_report = cbx_send_report;

/** Everything about a message at once; pointers borrow from the message. */
using message_view = cbx_message_view;

/** A payload's kind: how it is checked and framed. */
enum class kind : cbx_kind {
    json = CBX_JSON,     /**< valid JSON, a text frame */
    text = CBX_TEXT,     /**< valid UTF-8, a text frame */
    binary = CBX_BINARY, /**< any bytes, a binary frame */
};

/** Why a connection was closed (`CBX_CLOSE_*`). New reasons may appear:
 * treat an unknown value like a generic close. */
enum class close_code : cbx_close_code {
    none = CBX_CLOSE_NONE,
    closed_by_host = CBX_CLOSE_CLOSED_BY_HOST,
    host = CBX_CLOSE_HOST,
    slow_consumer = CBX_CLOSE_SLOW_CONSUMER,
    expired = CBX_CLOSE_EXPIRED,
    hub_closed = CBX_CLOSE_HUB_CLOSED,
    engine_lost_subscription = CBX_CLOSE_ENGINE_LOST_SUBSCRIPTION,
    engine_missed_messages = CBX_CLOSE_ENGINE_MISSED_MESSAGES,
};

/** `group_send` flag: no history. */
inline constexpr bool no_history = false;
/** `group_send` flag: save to the group's history with the next offset. */
inline constexpr bool save_history = true;

/** The library version, e.g. "0.1.0". */
inline std::string_view version() noexcept { return cbx_version(); }

/** The name of a result code, e.g. "CBX_INVALID_JSON" ("CBX_UNKNOWN" for
 * a value that is not a code). */
inline std::string_view result_name(cbx_result code) noexcept {
    return cbx_result_name(code);
}

/** A failed call: the `cbx_result` code, its name and the detail that
 * `cbx_last_error()` gave. `what()` is "NAME: detail". */
class error : public std::runtime_error {
public:
    error(cbx_result code, std::string detail)
        : std::runtime_error(std::string(cbx_result_name(code)) + ": " + detail),
          code_(code), detail_(std::move(detail)) {}

    /** The `CBX_*` result code. */
    cbx_result code() const noexcept { return code_; }
    /** The code's name, e.g. "CBX_NO_SUCH_CONNECTION". */
    std::string_view name() const noexcept { return cbx_result_name(code_); }
    /** The detail from `cbx_last_error()` at the time of the failure. */
    const std::string &detail() const noexcept { return detail_; }

private:
    cbx_result code_;
    std::string detail_;
};

/** A receive on a connection that the hub closed and that has nothing left
 * to drain (`CBX_CLOSED`); `connection::close_reason()` says why. */
class connection_closed : public error {
public:
    using error::error;
};

namespace detail {

/** Throws the exception for a failed call; reads this thread's last error
 * at once, before any other channelbox call can replace it. */
[[noreturn]] inline void raise(cbx_result code) {
    const char *text = cbx_last_error();
    std::string detail = text != nullptr ? text : "";
    if (code == CBX_CLOSED) {
        throw connection_closed(code, std::move(detail));
    }
    throw error(code, std::move(detail));
}

inline void check(cbx_result code) {
    if (code != CBX_OK) {
        raise(code);
    }
}

/** A NUL-terminated copy of `s` for the C API. A NUL inside would cut the
 * name short in C, naming a different group or user: refused. */
inline std::string c_string(std::string_view s, const char *what) {
    if (s.find('\0') != std::string_view::npos) {
        throw error(CBX_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return std::string(s);
}

/** Takes ownership of a string the library allocated. */
inline std::string take_string(char *s) {
    std::string out = s != nullptr ? s : "";
    cbx_string_free(s);
    return out;
}

template <class C, class = void>
struct is_byte_container : std::false_type {};

template <class C>
struct is_byte_container<
    C, std::void_t<decltype(std::data(std::declval<const C &>())),
                   decltype(std::size(std::declval<const C &>()))>>
    : std::bool_constant<
          !std::is_array_v<C> &&
          sizeof(*std::data(std::declval<const C &>())) == 1 &&
          std::is_trivially_copyable_v<
              std::remove_pointer_t<decltype(std::data(std::declval<const C &>()))>>> {};

} // namespace detail

/** A borrowed payload: a pointer and a size, like `std::span<const
 * std::byte>`. Built from a string or string view, a string literal
 * (without its NUL), any contiguous container of 1-byte elements
 * (`std::vector<std::uint8_t>`, `std::array<char, N>`, ...) or a pointer
 * and a size. */
class bytes_view {
public:
    constexpr bytes_view() noexcept = default;
    bytes_view(const void *data, std::size_t size) noexcept
        : data_(static_cast<const std::uint8_t *>(data)), size_(size) {}
    /** A NUL-terminated string, without its NUL. */
    bytes_view(const char *s) noexcept
        : bytes_view(s, s != nullptr ? std::char_traits<char>::length(s) : 0) {}
    /** Any contiguous container of 1-byte elements. */
    template <class C, class = std::enable_if_t<detail::is_byte_container<C>::value>>
    bytes_view(const C &c) noexcept : bytes_view(std::data(c), std::size(c)) {}

    const std::uint8_t *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const std::uint8_t *begin() const noexcept { return data_; }
    const std::uint8_t *end() const noexcept { return data_ + size_; }
    /** The bytes as characters (for text and JSON payloads). */
    std::string_view chars() const noexcept {
        return {reinterpret_cast<const char *>(data_), size_};
    }

private:
    const std::uint8_t *data_ = nullptr;
    std::size_t size_ = 0;
};

/** A received message, owned: freed with `cbx_message_free` when
 * destroyed. Valid whatever happens to the hub. */
class message {
public:
    /** Takes ownership of `m` (may be NULL: an empty message). */
    explicit message(cbx_message *m = nullptr) noexcept : m_(m) {}
    message(message &&other) noexcept : m_(std::exchange(other.m_, nullptr)) {}
    message &operator=(message &&other) noexcept {
        if (this != &other) {
            cbx_message_free(m_);
            m_ = std::exchange(other.m_, nullptr);
        }
        return *this;
    }
    message(const message &) = delete;
    message &operator=(const message &) = delete;
    ~message() { cbx_message_free(m_); }

    /** The payload's kind. */
    channelbox::kind kind() const noexcept {
        return static_cast<channelbox::kind>(cbx_message_kind(m_));
    }
    /** The payload bytes. */
    bytes_view data() const noexcept {
        std::size_t len = 0;
        const std::uint8_t *p = cbx_message_data(m_, &len);
        return {p, len};
    }
    /** The payload as characters (JSON and text payloads are UTF-8). */
    std::string_view text() const noexcept { return data().chars(); }
    /** The group it was sent to, "" for direct and user sends. */
    std::string_view group() const noexcept { return cbx_message_group(m_); }
    /** Its history offset, 0 when it was not saved. */
    std::uint64_t offset() const noexcept { return cbx_message_offset(m_); }
    /** When the hub accepted it, ms since the Unix epoch. */
    std::uint64_t ts_ms() const noexcept { return cbx_message_ts_ms(m_); }

    /** The C handle, still owned by this object. */
    cbx_message *get() const noexcept { return m_; }
    /** Gives up ownership: the caller frees it with `cbx_message_free`. */
    cbx_message *release() noexcept { return std::exchange(m_, nullptr); }
    explicit operator bool() const noexcept { return m_ != nullptr; }

private:
    cbx_message *m_;
};

/** Every field of each message in one call (`cbx_message_views`), for hosts
 * that read batches. The views borrow from `messages`. */
inline std::vector<message_view> views(const std::vector<message> &messages) {
    std::vector<const cbx_message *> handles;
    handles.reserve(messages.size());
    for (const message &m : messages) {
        handles.push_back(m.get());
    }
    std::vector<message_view> out(messages.size());
    detail::check(cbx_message_views(handles.data(), handles.size(), out.data()));
    return out;
}

/** Why a connection was closed (`cbx_conn_close_reason`). */
struct close_reason {
    /** One of the `CBX_CLOSE_*` codes; `close_code::none` while open. */
    close_code code = close_code::none;
    /** The host's own code with `close_code::host`, else 0. */
    std::uint32_t host_code = 0;
    /** For people, e.g. "connection expired (ttl)"; "" while open. */
    std::string text;
};

/** One entry of `hub::recv_ready`: a message queued for connection
 * `conn`, or, with no message, word that the hub closed `conn` and that
 * every message queued on it came before (`close_reason()` says why). */
struct delivery {
    conn_id conn = 0;
    std::optional<message> msg;
};

class hub;

/** An open connection, owned: its id is released (`cbx_conn_close`: it
 * leaves every group, pending messages are dropped) when it is destroyed
 * or `close()`d. Must not outlive its hub. */
class connection {
public:
    /** The most messages one `recv_batch` call takes. */
    static constexpr std::size_t max_batch = 65536;

    /** Takes ownership of connection `id` on `hub` (e.g. one opened with
     * the C API). */
    connection(cbx_hub *hub, conn_id id) noexcept : hub_(hub), id_(id) {}
    connection(connection &&other) noexcept
        : hub_(std::exchange(other.hub_, nullptr)), id_(std::exchange(other.id_, 0)) {}
    connection &operator=(connection &&other) noexcept {
        if (this != &other) {
            reset();
            hub_ = std::exchange(other.hub_, nullptr);
            id_ = std::exchange(other.id_, 0);
        }
        return *this;
    }
    connection(const connection &) = delete;
    connection &operator=(const connection &) = delete;
    ~connection() { reset(); }

    /** The connection's id, as `hub::take_ready` lists it; 0 once moved
     * from, closed or released. */
    conn_id id() const noexcept { return id_; }
    explicit operator bool() const noexcept { return hub_ != nullptr; }

    /** Sends a payload to this connection only (not saved). Throws
     * `connection_closed` when the hub had closed it, or this send found
     * its queue full and closed it. */
    void send(channelbox::kind k, bytes_view payload) const {
        detail::check(cbx_conn_send(hub_, id_, static_cast<cbx_kind>(k), payload.data(),
                                    payload.size()));
    }

    /** Joins a group (created on first use). Idempotent. */
    void join(std::string_view group) const {
        detail::check(cbx_group_add(hub_, id_, detail::c_string(group, "group").c_str()));
    }
    /** Leaves a group; leaving one it is not in changes nothing. */
    void leave(std::string_view group) const {
        detail::check(cbx_group_remove(hub_, id_, detail::c_string(group, "group").c_str()));
    }

    /** Receives one message, waiting up to `timeout_ms` (0: do not wait,
     * negative: forever). Empty when nothing came in time; throws
     * `connection_closed` once the hub closed it and it is drained. */
    std::optional<message> recv(std::int32_t timeout_ms = 0) const {
        cbx_message *m = nullptr;
        cbx_result rc = cbx_conn_recv(hub_, id_, timeout_ms, &m);
        if (rc == CBX_EMPTY) {
            return std::nullopt;
        }
        detail::check(rc);
        return message(m);
    }

    /** Receives up to `max` pending messages without waiting, appending them
     * to `out`; returns how many (0 when none is pending). A `max` over
     * `max_batch` takes at most `max_batch`. Throws `connection_closed`
     * once closed and drained, `CBX_INVALID_ARGUMENT` for a `max` of 0. */
    std::size_t recv_batch(std::vector<message> &out, std::size_t max) const {
        std::vector<cbx_message *> handles(max == 0 ? 1 : std::min(max, max_batch));
        std::size_t n = 0;
        cbx_result rc = cbx_conn_recv_batch(hub_, id_, handles.data(),
                                            std::min(max, max_batch), &n);
        if (rc == CBX_EMPTY) {
            return 0;
        }
        detail::check(rc);
        try {
            out.reserve(out.size() + n);
        } catch (...) {
            cbx_messages_free(handles.data(), n);
            throw;
        }
        for (std::size_t i = 0; i < n; i++) {
            out.emplace_back(handles[i]); // cannot throw: capacity reserved
        }
        return n;
    }

    /** Up to `max` pending messages (empty when none is pending). */
    std::vector<message> recv_batch(std::size_t max) const {
        std::vector<message> out;
        recv_batch(out, max);
        return out;
    }

    /** Why it was closed; `close_code::none` while open. */
    channelbox::close_reason close_reason() const {
        cbx_close_code code = CBX_CLOSE_NONE;
        std::uint32_t host_code = 0;
        char *text = nullptr;
        detail::check(cbx_conn_close_reason(hub_, id_, &code, &host_code, &text));
        return {static_cast<close_code>(code), host_code, detail::take_string(text)};
    }

    /** Releases the id now (throws on failure, e.g. an id already released
     * through the C API). */
    void close() {
        cbx_hub *hub = std::exchange(hub_, nullptr);
        conn_id id = std::exchange(id_, 0);
        detail::check(cbx_conn_close(hub, id));
    }

    /** Gives up ownership: the id stays open and is the caller's to close. */
    conn_id release() noexcept {
        hub_ = nullptr;
        return std::exchange(id_, 0);
    }

private:
    void reset() noexcept {
        if (hub_ != nullptr) {
            // Destructors do not throw; the only failure is an id already
            // released through the C API, which leaves nothing to free.
            (void)cbx_conn_close(hub_, id_);
            hub_ = nullptr;
            id_ = 0;
        }
    }

    cbx_hub *hub_;
    conn_id id_;
};

/** A hub, owned: freed (every connection closed, undelivered messages
 * dropped) when destroyed. Move-only. */
class hub {
public:
    /** A hub with the default settings. */
    hub() : hub(std::string_view("{}")) {}
    /** A hub configured by a JSON object (see `cbx_hub_new` for the keys).
     * Throws `CBX_INVALID_JSON` or `CBX_INVALID_ARGUMENT`. */
    explicit hub(std::string_view config_json) {
        cbx_hub *h = nullptr;
        detail::check(cbx_hub_new(detail::c_string(config_json, "config").c_str(), &h));
        h_ = h;
    }
    hub(hub &&other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
    hub &operator=(hub &&other) noexcept {
        if (this != &other) {
            cbx_hub_free(h_);
            h_ = std::exchange(other.h_, nullptr);
        }
        return *this;
    }
    hub(const hub &) = delete;
    hub &operator=(const hub &) = delete;
    ~hub() { cbx_hub_free(h_); }

    /** The C handle, still owned by this object. */
    cbx_hub *get() const noexcept { return h_; }

    /** Opens a connection for one client socket, with no user. */
    connection open() const { return open_impl(nullptr, 0); }
    /** Opens a connection belonging to `user` (for presence and
     * `user_send`); `ttl_seconds` > 0 makes the hub close it after that
     * long. */
    connection open(std::string_view user, std::uint32_t ttl_seconds = 0) const {
        return open_impl(detail::c_string(user, "user").c_str(), ttl_seconds);
    }

    /** Sends to every member of a group; with `save_history` it is saved
     * with the group's next offset (`report.offset`). */
    send_report group_send(std::string_view group, channelbox::kind k, bytes_view payload,
                           bool save = no_history) const {
        send_report report{};
        detail::check(cbx_group_send(h_, detail::c_string(group, "group").c_str(),
                                     static_cast<cbx_kind>(k), payload.data(), payload.size(),
                                     save ? CBX_SAVE_HISTORY : 0u, &report));
        return report;
    }

    /** Sends to every connection of a user (not saved). */
    send_report user_send(std::string_view user, channelbox::kind k, bytes_view payload) const {
        send_report report{};
        detail::check(cbx_user_send(h_, detail::c_string(user, "user").c_str(),
                                    static_cast<cbx_kind>(k), payload.data(), payload.size(),
                                    &report));
        return report;
    }

    /** One group's history as JSON: the newest `limit` (0: all) messages
     * after `since_offset`, oldest first (see `cbx_history_json`). */
    std::string history_json(std::string_view group, std::uint64_t since_offset = 0,
                             std::uint32_t limit = 0) const {
        char *out = nullptr;
        detail::check(cbx_history_json(h_, detail::c_string(group, "group").c_str(),
                                       since_offset, limit, &out));
        return detail::take_string(out);
    }
    /** Every group's history as one JSON object keyed by group. */
    std::string history_json() const {
        char *out = nullptr;
        detail::check(cbx_history_json(h_, nullptr, 0, 0, &out));
        return detail::take_string(out);
    }

    /** Replaces the history entry at `offset` in place (an edit); nothing
     * is delivered. Throws `CBX_NO_SUCH_MESSAGE` when it is not kept. */
    void history_replace(std::string_view group, std::uint64_t offset, channelbox::kind k,
                         bytes_view payload) const {
        detail::check(cbx_history_replace(h_, detail::c_string(group, "group").c_str(), offset,
                                          static_cast<cbx_kind>(k), payload.data(),
                                          payload.size()));
    }
    /** Forgets one group's history and starts a new epoch. */
    void history_flush(std::string_view group) const {
        detail::check(cbx_history_flush(h_, detail::c_string(group, "group").c_str()));
    }
    /** Forgets every group's history. */
    void history_flush() const { detail::check(cbx_history_flush(h_, nullptr)); }

    /** Every group with members, as JSON (see `cbx_groups_json`). */
    std::string groups_json() const {
        char *out = nullptr;
        detail::check(cbx_groups_json(h_, &out));
        return detail::take_string(out);
    }
    /** Counters and gauges as JSON (see `cbx_stats_json`). */
    std::string stats_json() const {
        char *out = nullptr;
        detail::check(cbx_stats_json(h_, &out));
        return detail::take_string(out);
    }
    /** Empties every group; connections stay open, history is kept. */
    void groups_flush() const { detail::check(cbx_groups_flush(h_)); }
    /** Closes every connection on the hub's side: receivers drain what was
     * queued, then get `connection_closed`. */
    void close_all() const { detail::check(cbx_close_all(h_)); }

    /** The readiness eventfd for epoll/poll: readable while some connection
     * has messages pending or was closed. Owned by the hub; do not close
     * it. The first call lists every connection that already holds
     * messages. Throws `CBX_NULL_POINTER` on a moved-from hub and
     * `CBX_INVALID_ARGUMENT` when no eventfd can be made. */
    int ready_fd() const {
        int fd = cbx_hub_ready_fd(h_);
        if (fd < 0) {
            const char *text = cbx_last_error();
            throw error(h_ == nullptr ? CBX_NULL_POINTER : CBX_INVALID_ARGUMENT,
                        text != nullptr ? text : "");
        }
        return fd;
    }
    /** Takes up to `max` ids of connections that became ready (see
     * `cbx_hub_take_ready`); empty when none is. Drain each until `recv`
     * returns empty. */
    std::vector<conn_id> take_ready(std::size_t max = 256) const {
        // As in C, a max of 0 is CBX_INVALID_ARGUMENT; more than
        // connection::max_batch takes at most that many.
        std::vector<conn_id> ids(max == 0 ? 1 : std::min(max, connection::max_batch));
        std::size_t n = 0;
        detail::check(cbx_hub_take_ready(h_, ids.data(), std::min(max, connection::max_batch), &n));
        ids.resize(n);
        return ids;
    }

    /** Receives from every ready connection in one call (see
     * `cbx_hub_recv_ready`): appends up to `max` entries to `out` and
     * returns how many (0 when no connection is ready). A `max` over
     * `connection::max_batch` takes at most that many; a `max` of 0 throws
     * `CBX_INVALID_ARGUMENT`. */
    std::size_t recv_ready(std::vector<delivery> &out, std::size_t max) const {
        std::size_t cap = std::min(max, connection::max_batch);
        std::vector<conn_id> ids(cap == 0 ? 1 : cap);
        std::vector<cbx_message *> handles(cap == 0 ? 1 : cap);
        std::size_t n = 0;
        cbx_result rc = cbx_hub_recv_ready(h_, ids.data(), handles.data(), cap, &n);
        if (rc == CBX_EMPTY) {
            return 0;
        }
        detail::check(rc);
        try {
            out.reserve(out.size() + n);
        } catch (...) {
            cbx_messages_free(handles.data(), n);
            throw;
        }
        for (std::size_t i = 0; i < n; i++) {
            // Cannot throw: capacity reserved, and both moves are noexcept.
            delivery d;
            d.conn = ids[i];
            if (handles[i] != nullptr) {
                d.msg.emplace(handles[i]);
            }
            out.push_back(std::move(d));
        }
        return n;
    }
    /** Up to `max` entries from the ready connections (empty when none is
     * ready). */
    std::vector<delivery> recv_ready(std::size_t max = 256) const {
        std::vector<delivery> out;
        recv_ready(out, max);
        return out;
    }

private:
    connection open_impl(const char *user, std::uint32_t ttl_seconds) const {
        conn_id id = 0;
        detail::check(cbx_conn_open(h_, user, ttl_seconds, &id));
        return connection(h_, id);
    }

    cbx_hub *h_ = nullptr;
};

} // namespace channelbox

#endif /* CHANNELBOX_HPP */
