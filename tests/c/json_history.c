/*
 * A JSON payload the hub accepts must come back from cbx_history_json as
 * the value that was sent, never as null: either the send refuses it
 * (CBX_INVALID_JSON) or the history keeps it. These payloads pass the
 * send's check but did not survive rendering into the history JSON.
 */

#include "check.h"

static void accepted_json_payloads_are_not_lost_in_history(void) {
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new(NULL, &hub));
    char deep[401];
    for (int i = 0; i < 200; i++) {
        deep[i] = '[';
        deep[200 + i] = ']';
    }
    deep[400] = '\0';
    /* A number out of double range, nesting deeper than 128, a lone
     * surrogate escape. */
    const char *payloads[] = {"1e400", deep, "\"\\ud800\""};
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        char group[16];
        snprintf(group, sizeof group, "g%zu", i);
        cbx_send_report r = {0, 0, 0, 0};
        cbx_result rc = cbx_group_send(hub, group, CBX_JSON, BYTES(payloads[i]),
                                       CBX_SAVE_HISTORY, &r);
        if (rc == CBX_INVALID_JSON) {
            continue; /* refused: fine */
        }
        CHECK(rc == CBX_OK && r.offset == 1);
        char *json = NULL;
        REQUIRE_OK(cbx_history_json(hub, group, 0, 0, &json));
        if (strstr(json, "\"payload\":null") != NULL) {
            fprintf(stderr,
                    "payload %zu (%.20s...) was accepted but its history "
                    "entry reads null: %.200s\n",
                    i, payloads[i], json);
            check_failures++;
        }
        cbx_string_free(json);
    }
    cbx_hub_free(hub);
}

int main(void) {
    RUN(accepted_json_payloads_are_not_lost_in_history);
    return check_summary();
}
