// Every wrapper in channelbox.hpp used as documented: handles, sends,
// receives (one, batch, views), history, groups, stats, close reasons and
// the ready fd. Errors are in errors.cpp. Built with -std=c++17 -Wall
// -Wextra -Werror -pedantic and run by tests/c_api.rs (also under valgrind
// and the sanitizers, which check that no handle leaks).

#include <poll.h>

#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"

namespace cbx = channelbox;

static bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

static bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

static void version_and_result_names() {
    CHECK(cbx::version() == CBX_EXPECTED_VERSION);
    CHECK(cbx::result_name(CBX_INVALID_JSON) == "CBX_INVALID_JSON");
    CHECK(cbx::result_name(CBX_OK) == "CBX_OK");
    CHECK(cbx::result_name(123) == "CBX_UNKNOWN");
}

static void group_send_reaches_members_and_saves_history() {
    cbx::hub hub(R"({"history_max_messages": 10})");
    auto alice = hub.open("alice");
    auto bob = hub.open("bob");
    alice.join("lobby");
    bob.join("lobby");
    cbx::send_report r = hub.group_send("lobby", cbx::kind::json, R"({"n":1})",
                                        cbx::save_history);
    CHECK(r.delivered == 2 && r.offset == 1 && r.dropped == 0 && r.disconnected == 0);
    r = hub.group_send("lobby", cbx::kind::text, std::string("plain"));
    CHECK(r.delivered == 2 && r.offset == 0);
    for (auto *c : {&alice, &bob}) {
        std::optional<cbx::message> m = c->recv(1000);
        CHECK(m.has_value() && *m);
        CHECK(m->kind() == cbx::kind::json);
        CHECK(m->text() == R"({"n":1})");
        CHECK(m->data().size() == 7 && m->data().chars() == m->text());
        CHECK(m->group() == "lobby");
        CHECK(m->offset() == 1);
        CHECK(m->ts_ms() > 1'600'000'000'000ULL);
        m = c->recv();
        CHECK(m && m->kind() == cbx::kind::text && m->text() == "plain" && m->offset() == 0);
        CHECK(!c->recv().has_value()); // nothing pending: empty, not an error
    }
    std::string history = hub.history_json("lobby");
    CHECK(contains(history, R"("offset":1)") && contains(history, R"("n":1)"));
    CHECK(contains(hub.history_json("lobby", 1), R"("messages":[])"));
    hub.group_send("lobby", cbx::kind::text, "second", cbx::save_history);
    hub.group_send("lobby", cbx::kind::text, "third", cbx::save_history);
    std::string newest = hub.history_json("lobby", 0, 1); // limit: the newest one
    CHECK(contains(newest, R"("third")") && !contains(newest, R"("second")"));
    CHECK(alice.recv(-1) && alice.recv(-1)); // negative: wait as long as it takes
    CHECK(contains(hub.history_json(), R"("lobby":)"));
}

static void payloads_from_every_kind_of_byte_range() {
    cbx::hub hub;
    auto c = hub.open();
    const std::vector<std::uint8_t> bytes{0, 1, 2, 255};
    const std::array<char, 3> chars{{'a', 'b', 'c'}};
    const std::string_view view = "view";
    const char raw[] = {'\x00', '\x7f'};
    c.send(cbx::kind::binary, bytes);
    c.send(cbx::kind::text, chars);
    c.send(cbx::kind::text, view);
    c.send(cbx::kind::binary, cbx::bytes_view(raw, sizeof raw));
    c.send(cbx::kind::text, "literal");
    c.send(cbx::kind::text, cbx::bytes_view());
    std::vector<cbx::message> got = c.recv_batch(16);
    CHECK(got.size() == 6);
    if (got.size() == 6) {
        CHECK(got[0].kind() == cbx::kind::binary &&
              std::vector<std::uint8_t>(got[0].data().begin(), got[0].data().end()) == bytes);
        CHECK(got[1].text() == "abc");
        CHECK(got[2].text() == "view");
        CHECK(got[3].data().size() == 2 && got[3].data().data()[1] == 0x7f);
        CHECK(got[4].text() == "literal"); // without the literal's NUL
        CHECK(got[5].data().empty() && got[5].group().empty());
    }
}

static void batches_and_views_read_many_messages() {
    cbx::hub hub;
    auto c = hub.open();
    c.join("g");
    for (int i = 0; i < 5; i++) {
        hub.group_send("g", cbx::kind::text, std::to_string(i), cbx::save_history);
    }
    std::vector<cbx::message> batch;
    CHECK(c.recv_batch(batch, 3) == 3);
    CHECK(c.recv_batch(batch, static_cast<std::size_t>(-1)) == 2); // huge max: all there is
    CHECK(c.recv_batch(batch, 3) == 0);
    CHECK(batch.size() == 5);
    std::vector<cbx::message_view> views = cbx::views(batch);
    CHECK(views.size() == 5);
    for (std::size_t i = 0; i < views.size() && i < batch.size(); i++) {
        CHECK(views[i].kind == CBX_TEXT);
        CHECK(std::string_view(reinterpret_cast<const char *>(views[i].data), views[i].len) ==
              std::to_string(i));
        CHECK(std::strcmp(views[i].group, "g") == 0);
        CHECK(views[i].offset == i + 1);
        CHECK(views[i].ts_ms == batch[i].ts_ms());
    }
    CHECK(cbx::views({}).empty());
}

static void user_send_reaches_every_connection_of_the_user() {
    cbx::hub hub;
    auto a1 = hub.open("ann");
    auto a2 = hub.open("ann");
    auto other = hub.open("other");
    cbx::send_report r = hub.user_send("ann", cbx::kind::json, "[1]");
    CHECK(r.delivered == 2 && r.offset == 0);
    CHECK(a1.recv() && a2.recv());
    CHECK(!other.recv());
    CHECK(hub.user_send("nobody", cbx::kind::text, "x").delivered == 0);
}

static void history_replace_and_flush() {
    cbx::hub hub;
    hub.group_send("a", cbx::kind::text, "first", cbx::save_history);
    hub.group_send("b", cbx::kind::text, "other", cbx::save_history);
    hub.history_replace("a", 1, cbx::kind::text, "edited");
    std::string a = hub.history_json("a");
    CHECK(contains(a, R"("edited")") && !contains(a, R"("first")"));
    hub.history_flush("a");
    CHECK(!contains(hub.history_json("a"), "edited"));
    CHECK(contains(hub.history_json("b"), "other"));
    hub.history_flush();
    CHECK(!contains(hub.history_json("b"), "other"));
    // Offsets keep counting up across a flush.
    CHECK(hub.group_send("a", cbx::kind::text, "again", cbx::save_history).offset == 2);
}

static void groups_stats_leave_and_flush() {
    cbx::hub hub;
    auto c = hub.open("carol");
    c.join("g1");
    c.join("g2");
    std::string groups = hub.groups_json();
    CHECK(contains(groups, R"("g1")") && contains(groups, R"("g2")") &&
          contains(groups, R"("carol")"));
    c.leave("g2");
    c.leave("never-joined");
    CHECK(!contains(hub.groups_json(), R"("g2")"));
    std::string stats = hub.stats_json();
    CHECK(contains(stats, R"("connections":1)"));
    hub.groups_flush();
    CHECK(hub.groups_json() == "{}");
    CHECK(hub.group_send("g1", cbx::kind::text, "x").delivered == 0);
    c.send(cbx::kind::text, "still open");
    CHECK(c.recv().has_value());
}

static void connections_release_their_id_when_destroyed_or_closed() {
    cbx::hub hub;
    {
        auto scoped = hub.open("scoped");
        CHECK(contains(hub.stats_json(), R"("connections":1)"));
    }
    CHECK(contains(hub.stats_json(), R"("connections":0)"));

    auto c = hub.open();
    cbx::conn_id id = c.id();
    CHECK(id != 0 && c);
    cbx::connection moved = std::move(c);
    CHECK(moved.id() == id && !c && c.id() == 0); // NOLINT: moved-from is defined
    cbx::connection target = hub.open();
    target = std::move(moved); // the target's own connection is released
    CHECK(target.id() == id);
    CHECK(contains(hub.stats_json(), R"("connections":1)"));
    target.close();
    CHECK(!target && target.id() == 0);
    CHECK(contains(hub.stats_json(), R"("connections":0)"));

    // release() hands the id over; connection(hub, id) takes it back.
    cbx::conn_id raw = hub.open("raw").release();
    CHECK(cbx_conn_send(hub.get(), raw, CBX_TEXT, reinterpret_cast<const std::uint8_t *>("x"),
                        1) == CBX_OK);
    cbx::connection adopted(hub.get(), raw);
    CHECK(adopted.recv() && adopted.id() == raw);
}

static void messages_are_owned_and_outlive_the_hub() {
    std::optional<cbx::message> kept;
    {
        cbx::hub hub;
        auto c = hub.open();
        c.send(cbx::kind::text, "survivor");
        c.send(cbx::kind::text, "released");
        kept = c.recv();
        cbx::message second = std::move(*c.recv());
        cbx::message empty;
        CHECK(!empty && empty.kind() == static_cast<cbx::kind>(0) && empty.text().empty());
        empty = std::move(second);
        CHECK(empty && !second); // NOLINT: moved-from is defined
        cbx_message *raw = empty.release();
        CHECK(raw != nullptr && !empty);
        cbx::message again(raw);
        CHECK(again.get() == raw && again.text() == "released");
    }
    CHECK(kept && kept->text() == "survivor");
}

static void hubs_move() {
    cbx::hub a;
    cbx_hub *raw = a.get();
    cbx::hub b = std::move(a);
    CHECK(b.get() == raw && a.get() == nullptr); // NOLINT: moved-from is defined
    cbx::hub c(R"({"max_payload_bytes": 10})");
    c = std::move(b); // c's own hub is freed
    CHECK(c.get() == raw);
    auto conn = c.open();
    conn.send(cbx::kind::text, "longer than ten bytes"); // default limit again
    CHECK(conn.recv().has_value());
}

static void close_reasons_say_why() {
    cbx::hub hub(R"({"queue_max_messages": 1})");
    auto slow = hub.open("slow");
    auto open = hub.open("open");
    cbx::close_reason none = open.close_reason();
    CHECK(none.code == cbx::close_code::none && none.host_code == 0 && none.text.empty());
    slow.join("g");
    hub.group_send("g", cbx::kind::text, "1");
    cbx::send_report r = hub.group_send("g", cbx::kind::text, "2");
    CHECK(r.disconnected == 1);
    CHECK(slow.recv().has_value()); // drains what was queued first
    bool closed = false;
    try {
        (void)slow.recv();
    } catch (const cbx::connection_closed &e) {
        closed = e.code() == CBX_CLOSED;
    }
    CHECK(closed);
    cbx::close_reason why = slow.close_reason();
    CHECK(why.code == cbx::close_code::slow_consumer && why.host_code == 0);
    CHECK(contains(why.text, "slow consumer"));

    hub.close_all();
    CHECK(open.close_reason().code == cbx::close_code::hub_closed);
    bool batch_closed = false;
    try {
        (void)open.recv_batch(4);
    } catch (const cbx::connection_closed &) {
        batch_closed = true;
    }
    CHECK(batch_closed);
}

static void ttl_expires_a_connection() {
    cbx::hub hub;
    // Before the open: expiry is due 1 s after the open began, and the
    // open itself can be slow (valgrind).
    auto started = std::chrono::steady_clock::now();
    auto temp = hub.open("temp", 1);
    bool closed = false;
    // Bounded: due 1 s after the open; give it until 3 s.
    while (!closed && std::chrono::steady_clock::now() - started < std::chrono::seconds(3)) {
        try {
            CHECK(!temp.recv(100).has_value());
        } catch (const cbx::connection_closed &) {
            closed = true;
        }
    }
    CHECK(closed);
    CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(900));
    cbx::close_reason why = temp.close_reason();
    CHECK(why.code == cbx::close_code::expired && contains(why.text, "ttl"));
}

static void ready_fd_lists_what_was_queued_before_it_and_after() {
    cbx::hub hub;
    auto early = hub.open();
    auto late = hub.open();
    early.send(cbx::kind::text, "queued before the fd");
    int fd = hub.ready_fd();
    CHECK(fd >= 0 && hub.ready_fd() == fd);
    CHECK(readable(fd));
    std::vector<cbx::conn_id> ids = hub.take_ready();
    CHECK(ids.size() == 1 && ids[0] == early.id());
    CHECK(!readable(fd));
    CHECK(early.recv() && !early.recv());
    late.send(cbx::kind::text, "after");
    std::thread sender([&] { early.send(cbx::kind::text, "from a thread"); });
    sender.join();
    CHECK(readable(fd));
    ids = hub.take_ready(1);
    CHECK(ids.size() == 1);
    ids = hub.take_ready(static_cast<std::size_t>(-1)); // huge max: what there is
    CHECK(ids.size() == 1);
    CHECK(hub.take_ready().empty() && !readable(fd));
}

static void recv_ready_drains_every_ready_connection() {
    cbx::hub hub(R"({"queue_max_messages": 1})");
    auto a = hub.open();
    auto b = hub.open();
    a.join("g");
    b.join("g");
    (void)hub.ready_fd();
    CHECK(hub.recv_ready().empty());
    hub.group_send("g", cbx::kind::text, "hi");
    std::vector<cbx::delivery> got = hub.recv_ready(1);
    CHECK(got.size() == 1 && got[0].conn == a.id() && got[0].msg &&
          got[0].msg->text() == "hi" && got[0].msg->group() == "g");
    hub.recv_ready(got, static_cast<std::size_t>(-1)); // huge max: what there is
    CHECK(got.size() == 2 && got[1].conn == b.id() && got[1].msg->text() == "hi");
    b.send(cbx::kind::text, "1");
    CHECK_THROWS(b.send(cbx::kind::text, "2"), CBX_CLOSED, "");
    got = hub.recv_ready();
    CHECK(got.size() == 2 && got[0].msg && got[0].msg->text() == "1");
    CHECK(got[1].conn == b.id() && !got[1].msg);
    CHECK(b.close_reason().code == cbx::close_code::slow_consumer);
    CHECK(hub.recv_ready().empty());
}

int main() {
    RUN(version_and_result_names);
    RUN(group_send_reaches_members_and_saves_history);
    RUN(payloads_from_every_kind_of_byte_range);
    RUN(batches_and_views_read_many_messages);
    RUN(user_send_reaches_every_connection_of_the_user);
    RUN(history_replace_and_flush);
    RUN(groups_stats_leave_and_flush);
    RUN(connections_release_their_id_when_destroyed_or_closed);
    RUN(messages_are_owned_and_outlive_the_hub);
    RUN(hubs_move);
    RUN(close_reasons_say_why);
    RUN(ttl_expires_a_connection);
    RUN(ready_fd_lists_what_was_queued_before_it_and_after);
    RUN(recv_ready_drains_every_ready_connection);
    return check_summary();
}
