/*
 * hello.cpp: the channelbox C++ header in one page. Two connections join
 * a group, one message is sent and saved to the group's history, both
 * receive it, the history is printed as JSON, and a bad payload shows how
 * errors arrive. Every handle is freed by its destructor.
 *
 * Build and run from the repository root, after `cargo build`:
 *
 *   c++ -std=c++17 -Wall -Wextra -Iinclude examples/cpp/hello.cpp -o hello \
 *       -Ltarget/debug -lchannelbox -Wl,-rpath,"$PWD/target/debug" && ./hello
 *
 * or, after `scripts/install-c PREFIX` (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig):
 *
 *   c++ -std=c++17 hello.cpp $(pkg-config --cflags --libs channelbox)
 *
 * (tests/c_api.rs builds and runs it the first way.)
 */

#include <iostream>

#include "channelbox.hpp"

namespace cbx = channelbox;

int main() {
    try {
        // A hub with default limits except a history bound; the config is JSON.
        cbx::hub hub(R"({"history_max_messages": 100})");
        std::cout << "channelbox " << cbx::version() << "\n";

        // One connection per client socket the host owns. Each is closed
        // when its handle goes out of scope (before the hub: declared after).
        cbx::connection alice = hub.open("alice");
        cbx::connection bob = hub.open("bob");
        alice.join("lobby");
        bob.join("lobby");

        // A JSON payload, checked by the hub, delivered to every member and
        // saved to the group's history with the next offset.
        cbx::send_report sent = hub.group_send(
            "lobby", cbx::kind::json, R"({"from":"alice","text":"hello, lobby"})",
            cbx::save_history);
        std::cout << "sent: offset " << sent.offset << ", delivered to " << sent.delivered
                  << "\n";

        // Each connection receives its copy; wait up to 1 s for it.
        for (const cbx::connection *c : {&alice, &bob}) {
            if (std::optional<cbx::message> m = c->recv(1000)) {
                std::cout << "conn " << c->id() << " got " << m->text() << " (group "
                          << m->group() << ", offset " << m->offset() << ")\n";
            }
        }

        // The group's history, as JSON, for clients catching up.
        std::cout << "history: " << hub.history_json("lobby") << "\n";

        // A refused payload is an exception with the C code and the detail.
        try {
            hub.group_send("lobby", cbx::kind::json, "{not json");
        } catch (const cbx::error &e) {
            std::cout << "error: " << e.name() << " (" << e.code() << "): " << e.detail()
                      << "\n";
        }
        return 0;
    } catch (const cbx::error &e) {
        std::cerr << "channelbox: " << e.what() << "\n";
        return 1;
    }
}
