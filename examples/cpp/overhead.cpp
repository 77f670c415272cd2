/*
 * overhead.cpp: what channelbox.hpp costs over the C calls it wraps. The
 * same loop (group send of a 100-byte text to one member, receive, free)
 * runs through the C API (`overhead c N`) or the C++ wrapper
 * (`overhead cpp N`); run each under callgrind and compare instructions
 * per iteration (times are too noisy on a shared machine):
 *
 *   cargo build --release
 *   c++ -std=c++17 -O2 -Iinclude examples/cpp/overhead.cpp -o overhead \
 *       -Ltarget/release -lchannelbox -Wl,-rpath,"$PWD/target/release"
 *   for api in c cpp; do for n in 10000 20000; do
 *     valgrind --tool=callgrind --callgrind-out-file=/dev/null ./overhead $api $n 2>&1 | grep refs
 *   done; done
 *
 * (the difference between the two counts of one API over 10000 is its cost
 * per iteration, without the setup). With no arguments it runs both loops
 * 1000 times: tests/c_api.rs does, so it keeps building.
 */

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "channelbox.hpp"

static int run_c(long n, const std::string &payload) {
    cbx_hub *hub = nullptr;
    uint64_t conn = 0;
    if (cbx_hub_new(nullptr, &hub) != CBX_OK || cbx_conn_open(hub, nullptr, 0, &conn) != CBX_OK ||
        cbx_group_add(hub, conn, "g") != CBX_OK) {
        std::fprintf(stderr, "setup: %s\n", cbx_last_error());
        cbx_hub_free(hub);
        return 1;
    }
    std::size_t bytes = 0;
    for (long i = 0; i < n; i++) {
        cbx_send_report report;
        cbx_message *m = nullptr;
        if (cbx_group_send(hub, "g", CBX_TEXT, reinterpret_cast<const uint8_t *>(payload.data()),
                           payload.size(), 0, &report) != CBX_OK ||
            cbx_conn_recv(hub, conn, 0, &m) != CBX_OK) {
            std::fprintf(stderr, "loop: %s\n", cbx_last_error());
            cbx_hub_free(hub);
            return 1;
        }
        std::size_t len = 0;
        cbx_message_data(m, &len);
        bytes += len;
        cbx_message_free(m);
    }
    cbx_conn_close(hub, conn);
    cbx_hub_free(hub);
    std::printf("c: %ld messages, %zu bytes\n", n, bytes);
    return 0;
}

static int run_cpp(long n, const std::string &payload) {
    try {
        channelbox::hub hub;
        channelbox::connection conn = hub.open();
        conn.join("g");
        std::size_t bytes = 0;
        for (long i = 0; i < n; i++) {
            hub.group_send("g", channelbox::kind::text, payload);
            std::optional<channelbox::message> m = conn.recv();
            bytes += m ? m->data().size() : 0;
        }
        std::printf("cpp: %ld messages, %zu bytes\n", n, bytes);
        return 0;
    } catch (const channelbox::error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}

int main(int argc, char **argv) {
    const std::string payload(100, 'x');
    if (argc == 1) {
        return run_c(1000, payload) | run_cpp(1000, payload);
    }
    if (argc != 3 || (std::strcmp(argv[1], "c") != 0 && std::strcmp(argv[1], "cpp") != 0)) {
        std::fprintf(stderr, "usage: overhead c|cpp ITERATIONS\n");
        return 2;
    }
    long n = std::strtol(argv[2], nullptr, 10);
    if (n <= 0 || n > 100000000) {
        std::fprintf(stderr, "ITERATIONS: 1 to 100000000\n");
        return 2;
    }
    return std::strcmp(argv[1], "c") == 0 ? run_c(n, payload) : run_cpp(n, payload);
}
