// The C header must compile as C++ (extern "C", no C-only constructs) and
// link: tests/c_api.rs builds this with g++ -Wall -Wextra -Werror.

#include "channelbox.h"

#include <cstdio>
#include <cstring>
#include <string>

int main() {
    cbx_hub *hub = nullptr;
    if (cbx_hub_new("{}", &hub) != CBX_OK) {
        std::fprintf(stderr, "cbx_hub_new: %s\n", cbx_last_error());
        return 1;
    }
    uint64_t conn = 0;
    cbx_send_report report{};
    const std::string payload = "{\"from\":\"c++\"}";
    bool ok = cbx_conn_open(hub, "alice", 0, &conn) == CBX_OK &&
              cbx_group_add(hub, conn, "cpp") == CBX_OK &&
              cbx_group_send(hub, "cpp", CBX_JSON,
                             reinterpret_cast<const uint8_t *>(payload.data()),
                             payload.size(), CBX_SAVE_HISTORY,
                             &report) == CBX_OK &&
              report.offset == 1 && report.delivered == 1;
    cbx_message *m = nullptr;
    ok = ok && cbx_conn_recv(hub, conn, 0, &m) == CBX_OK;
    if (ok) {
        size_t len = 0;
        const uint8_t *data = cbx_message_data(m, &len);
        ok = std::string(reinterpret_cast<const char *>(data), len) == payload &&
             std::strcmp(cbx_message_group(m), "cpp") == 0;
    }
    cbx_message_free(m);
    ok = ok && std::strcmp(cbx_result_name(CBX_INVALID_JSON), "CBX_INVALID_JSON") == 0;
    cbx_hub_free(hub);
    if (!ok) {
        std::fprintf(stderr, "cpp_compat failed: %s\n", cbx_last_error());
        return 1;
    }
    std::printf("ok   cpp_compat (channelbox %s)\n", cbx_version());
    return 0;
}
