/*
 * A direct send that finds the receiver's queue full under the
 * "disconnect" policy closes the connection and queues nothing, so it must
 * not report success: it returns CBX_CLOSED, like every later send. (With
 * CBX_OK the host believes the message is on its way, and cbx_conn_send
 * has no report to say otherwise.)
 */

#include "check.h"

static void send_that_disconnects_returns_closed(void) {
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new("{\"queue_max_messages\": 1}", &hub));
    uint64_t c = 0;
    REQUIRE_OK(cbx_conn_open(hub, NULL, 0, &c));
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, BYTES("queued")), CBX_OK);
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, BYTES("overflow")), CBX_CLOSED);
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, BYTES("later")), CBX_CLOSED);
    /* Only the first one arrives. */
    cbx_message *m = NULL;
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_OK);
    cbx_message_free(m);
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_CLOSED);
    cbx_hub_free(hub);
}

int main(void) {
    RUN(send_that_disconnects_returns_closed);
    return check_summary();
}
