/*
 * JSON text is UTF-8 (RFC 8259), and a CBX_JSON payload is sent as a
 * WebSocket text frame, which must be UTF-8 too. A JSON payload whose
 * strings hold bytes that are not UTF-8 must be refused like any invalid
 * payload (CBX_INVALID_JSON, or CBX_INVALID_UTF8), with nothing delivered
 * and nothing saved.
 */

#include "check.h"

static size_t history_count(cbx_hub *hub, const char *group) {
    char *json = NULL;
    REQUIRE_OK(cbx_history_json(hub, group, 0, 0, &json));
    size_t n = 0;
    for (const char *p = json; (p = strstr(p, "\"offset\":")) != NULL; p++) {
        n++;
    }
    cbx_string_free(json);
    return n;
}

static void json_payload_with_invalid_utf8_is_refused(void) {
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new(NULL, &hub));
    uint64_t rx = 0;
    REQUIRE_OK(cbx_conn_open(hub, NULL, 0, &rx));
    REQUIRE_OK(cbx_group_add(hub, rx, "g"));
    /* A stray byte in a string value, a truncated sequence in a value, an
     * encoded surrogate in a key. */
    static const char *const payloads[] = {"\"\xff\"", "{\"k\":\"a\xc3\"}",
                                           "{\"\xed\xa0\x80\":1}"};
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        cbx_result rc = cbx_group_send(hub, "g", CBX_JSON, BYTES(payloads[i]),
                                       CBX_SAVE_HISTORY, NULL);
        if (rc != CBX_INVALID_JSON && rc != CBX_INVALID_UTF8) {
            fprintf(stderr,
                    "cbx_group_send(CBX_JSON, payload %zu with invalid UTF-8) "
                    "returned %s, expected CBX_INVALID_JSON\n",
                    i, cbx_result_name(rc));
            check_failures++;
        }
        rc = cbx_conn_send(hub, rx, CBX_JSON, BYTES(payloads[i]));
        if (rc != CBX_INVALID_JSON && rc != CBX_INVALID_UTF8) {
            fprintf(stderr,
                    "cbx_conn_send(CBX_JSON, payload %zu with invalid UTF-8) "
                    "returned %s, expected CBX_INVALID_JSON\n",
                    i, cbx_result_name(rc));
            check_failures++;
        }
        rc = cbx_user_send(hub, "nobody", CBX_JSON, BYTES(payloads[i]), NULL);
        if (rc != CBX_INVALID_JSON && rc != CBX_INVALID_UTF8) {
            fprintf(stderr,
                    "cbx_user_send(CBX_JSON, payload %zu with invalid UTF-8) "
                    "returned %s, expected CBX_INVALID_JSON\n",
                    i, cbx_result_name(rc));
            check_failures++;
        }
    }
    cbx_message *m = NULL;
    size_t delivered = 0;
    while (cbx_conn_recv(hub, rx, 0, &m) == CBX_OK) {
        cbx_message_free(m);
        delivered++;
    }
    CHECK(delivered == 0);
    CHECK(history_count(hub, "g") == 0);
    cbx_hub_free(hub);
}

int main(void) {
    RUN(json_payload_with_invalid_utf8_is_refused);
    return check_summary();
}
