// channelbox.hpp's error paths: each failure throws channelbox::error with
// the C API's code, its name and cbx_last_error()'s detail; closed
// connections throw connection_closed; moved-from handles throw
// CBX_NULL_POINTER instead of crashing; and nothing leaks while exceptions
// unwind (valgrind and the sanitizers run this too).

#include <cstdint>
#include <string>
#include <vector>

#include "check.hpp"

namespace cbx = channelbox;

static void bad_configs_are_refused() {
    CHECK_THROWS(cbx::hub("not json"), CBX_INVALID_JSON, "");
    CHECK_THROWS(cbx::hub(R"({"no_such_key": 1})"), CBX_INVALID_ARGUMENT, "no_such_key");
    CHECK_THROWS(cbx::hub(R"({"queue_max_bytes": "big"})"), CBX_INVALID_ARGUMENT, "");
    CHECK_THROWS(cbx::hub(std::string_view("{}\0{\"x\":1}", 10)), CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(cbx::hub("\xff"), CBX_INVALID_UTF8, "");
}

static void bad_payloads_are_refused_with_their_code() {
    cbx::hub hub(R"({"max_payload_bytes": 16, "max_group_name_bytes": 8, "max_user_bytes": 4})");
    auto c = hub.open("u");
    c.join("g");
    CHECK_THROWS(hub.group_send("g", cbx::kind::json, "{", cbx::save_history), CBX_INVALID_JSON,
                 "");
    CHECK_THROWS(hub.group_send("g", cbx::kind::text, "\xc3\x28"), CBX_INVALID_UTF8, "");
    CHECK_THROWS(hub.group_send("g", cbx::kind::binary, std::string(17, 'x')), CBX_TOO_LARGE,
                 "17");
    CHECK_THROWS(c.send(cbx::kind::json, "[1,"), CBX_INVALID_JSON, "");
    CHECK_THROWS(hub.user_send("u", cbx::kind::text, "\xff"), CBX_INVALID_UTF8, "");
    CHECK_THROWS(c.send(cbx::kind::binary, cbx::bytes_view(nullptr, 3)), CBX_NULL_POINTER,
                 "data");
    const char one = 'x';
    CHECK_THROWS(c.send(cbx::kind::binary, cbx::bytes_view(&one, SIZE_MAX)), CBX_TOO_LARGE, "");
    // Refused payloads were neither delivered nor saved.
    CHECK(!c.recv().has_value());
    CHECK(hub.history_json("g").find(R"("messages":[])") != std::string::npos);
}

static void bad_names_are_refused() {
    cbx::hub hub(R"({"max_group_name_bytes": 8, "max_user_bytes": 4})");
    auto c = hub.open();
    CHECK_THROWS(c.join(""), CBX_INVALID_ARGUMENT, "");
    CHECK_THROWS(c.join("longer than eight"), CBX_TOO_LARGE, "");
    CHECK_THROWS(c.join(std::string_view("a\0b", 3)), CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(c.leave(std::string_view("a\0b", 3)), CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(c.join("\xff"), CBX_INVALID_UTF8, "");
    CHECK_THROWS(hub.open("toolong"), CBX_TOO_LARGE, "");
    CHECK_THROWS(hub.open("\xfe"), CBX_INVALID_UTF8, "");
    CHECK_THROWS(hub.open(std::string_view("a\0", 2)), CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(hub.group_send(std::string_view("g\0x", 3), cbx::kind::text, "x"),
                 CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(hub.user_send(std::string_view("u\0x", 3), cbx::kind::text, "x"),
                 CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(hub.history_json(std::string_view("g\0", 2)), CBX_INVALID_ARGUMENT, "NUL");
    CHECK_THROWS(hub.history_flush(""), CBX_INVALID_ARGUMENT, "");
    CHECK_THROWS(hub.history_replace(std::string_view("g\0", 2), 1, cbx::kind::text, "x"),
                 CBX_INVALID_ARGUMENT, "NUL");
}

static void stale_ids_throw_no_such_connection() {
    cbx::hub hub;
    cbx::conn_id id = hub.open().release();
    CHECK(cbx_conn_close(hub.get(), id) == CBX_OK); // released behind the wrapper's back
    cbx::connection stale(hub.get(), id);
    CHECK_THROWS(stale.send(cbx::kind::text, "x"), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS(stale.join("g"), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS(stale.leave("g"), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS((void)stale.recv(), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS((void)stale.recv_batch(4), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS((void)stale.close_reason(), CBX_NO_SUCH_CONNECTION, "");
    CHECK_THROWS(stale.close(), CBX_NO_SUCH_CONNECTION, "");
    cbx::connection stale_again(hub.get(), id);
    // ...and its destructor swallows the same error: nothing to free.
}

static void missing_history_entries_throw_no_such_message() {
    cbx::hub hub;
    hub.group_send("g", cbx::kind::text, "x", cbx::save_history);
    CHECK_THROWS(hub.history_replace("g", 7, cbx::kind::text, "y"), CBX_NO_SUCH_MESSAGE, "7");
    CHECK_THROWS(hub.history_replace("g", 1, cbx::kind::json, "{"), CBX_INVALID_JSON, "");
}

static void counts_of_zero_are_refused_like_in_c() {
    cbx::hub hub;
    auto c = hub.open();
    std::vector<cbx::message> out;
    CHECK_THROWS(c.recv_batch(out, 0), CBX_INVALID_ARGUMENT, "cap");
    CHECK_THROWS((void)hub.take_ready(0), CBX_INVALID_ARGUMENT, "cap");
    std::vector<cbx::delivery> ready;
    CHECK_THROWS(hub.recv_ready(ready, 0), CBX_INVALID_ARGUMENT, "cap");
    CHECK(ready.empty());
    CHECK(out.empty());
}

static void closed_connections_throw_connection_closed() {
    cbx::hub hub;
    auto c = hub.open();
    c.send(cbx::kind::text, "queued");
    hub.close_all();
    CHECK(c.recv().has_value()); // drains first
    CHECK_THROWS((void)c.recv(), CBX_CLOSED, "");
    CHECK_THROWS((void)c.recv(50), CBX_CLOSED, "");
    CHECK_THROWS((void)c.recv_batch(8), CBX_CLOSED, "");
    CHECK_THROWS(c.send(cbx::kind::text, "late"), CBX_CLOSED, "");
    bool typed = false;
    try {
        (void)c.recv();
    } catch (const cbx::connection_closed &e) {
        typed = e.code() == CBX_CLOSED;
    }
    CHECK(typed);
    c.close(); // the id is still valid until closed by the host
}

static void moved_from_handles_throw_null_pointer() {
    cbx::hub hub;
    cbx::hub taken = std::move(hub);
    CHECK_THROWS(hub.open(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.open("u"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.group_send("g", cbx::kind::text, "x"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.user_send("u", cbx::kind::text, "x"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.history_json("g"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.history_json(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.history_replace("g", 1, cbx::kind::text, "x"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.history_flush("g"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.history_flush(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.groups_json(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.stats_json(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.groups_flush(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.close_all(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.ready_fd(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(hub.take_ready(), CBX_NULL_POINTER, "hub");

    auto c = taken.open();
    cbx::connection moved = std::move(c);
    CHECK_THROWS(c.send(cbx::kind::text, "x"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(c.join("g"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(c.leave("g"), CBX_NULL_POINTER, "hub");
    CHECK_THROWS((void)c.recv(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS((void)c.recv_batch(2), CBX_NULL_POINTER, "hub");
    CHECK_THROWS((void)c.close_reason(), CBX_NULL_POINTER, "hub");
    CHECK_THROWS(c.close(), CBX_NULL_POINTER, "hub");

    std::vector<cbx::message> with_empty;
    with_empty.emplace_back();
    CHECK_THROWS((void)cbx::views(with_empty), CBX_INVALID_ARGUMENT, "NULL");
}

static void the_detail_is_taken_when_thrown() {
    cbx::hub hub;
    std::string detail;
    try {
        hub.group_send("g", cbx::kind::json, "{");
    } catch (const cbx::error &e) {
        // A later successful call resets cbx_last_error(), not the exception.
        hub.group_send("g", cbx::kind::text, "ok");
        CHECK(std::string(cbx_last_error()).empty());
        detail = e.detail();
        CHECK(std::string(e.what()) == "CBX_INVALID_JSON: " + e.detail());
    }
    CHECK(!detail.empty());
}

int main() {
    RUN(bad_configs_are_refused);
    RUN(bad_payloads_are_refused_with_their_code);
    RUN(bad_names_are_refused);
    RUN(stale_ids_throw_no_such_connection);
    RUN(missing_history_entries_throw_no_such_message);
    RUN(counts_of_zero_are_refused_like_in_c);
    RUN(closed_connections_throw_connection_closed);
    RUN(moved_from_handles_throw_null_pointer);
    RUN(the_detail_is_taken_when_thrown);
    return check_summary();
}
