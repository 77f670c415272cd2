/*
 * hello.c: the channelbox C API in one page. Two connections join a group,
 * one message is sent and saved to the group's history, both receive it,
 * and the history is printed as JSON.
 *
 * Build and run from the repository root, after `cargo build`:
 *
 *   cc -Wall -Wextra -std=c11 -Iinclude examples/c/hello.c -o hello \
 *      -Ltarget/debug -lchannelbox -Wl,-rpath,"$PWD/target/debug" && ./hello
 *
 * (tests/c_api.rs builds and runs it the same way.)
 */

#include <stdio.h>
#include <string.h>

#include "channelbox.h"

/* Every fallible call returns a cbx_result; on failure, cbx_last_error()
 * says why. */
#define TRY(call)                                                         \
    do {                                                                  \
        cbx_result rc_ = (call);                                          \
        if (rc_ != CBX_OK) {                                              \
            fprintf(stderr, "%s: %s: %s\n", #call, cbx_result_name(rc_),  \
                    cbx_last_error());                                    \
            goto out;                                                     \
        }                                                                 \
    } while (0)

int main(void) {
    /* Declared up front so every `goto out` can clean up. */
    int status = 1;
    cbx_hub *hub = NULL;
    char *history = NULL;
    uint64_t alice = 0, bob = 0;
    cbx_send_report report;
    cbx_message *none = NULL;
    const char *text = "{\"from\":\"alice\",\"text\":\"hello, lobby\"}";

    /* A hub with default limits ("{}" or NULL); the config is JSON. */
    TRY(cbx_hub_new("{\"history_max_messages\": 100}", &hub));
    printf("channelbox %s\n", cbx_version());

    /* One connection per client socket the host owns, optionally with a
     * user id (for presence and cbx_user_send). */
    TRY(cbx_conn_open(hub, "alice", 0, &alice));
    TRY(cbx_conn_open(hub, "bob", 0, &bob));
    TRY(cbx_group_add(hub, alice, "lobby"));
    TRY(cbx_group_add(hub, bob, "lobby"));

    /* A JSON payload, checked by the hub, delivered to every member and
     * saved to the group's history with the next offset. */
    TRY(cbx_group_send(hub, "lobby", CBX_JSON, (const uint8_t *)text,
                       strlen(text), CBX_SAVE_HISTORY, &report));
    printf("sent: offset %llu, delivered to %llu\n",
           (unsigned long long)report.offset,
           (unsigned long long)report.delivered);

    /* Each connection receives its copy; wait up to 1 s for it. */
    for (int i = 0; i < 2; i++) {
        uint64_t conn = i == 0 ? alice : bob;
        cbx_message *m = NULL;
        TRY(cbx_conn_recv(hub, conn, 1000, &m));
        size_t len = 0;
        const uint8_t *data = cbx_message_data(m, &len);
        printf("conn %llu got %.*s (group %s, offset %llu)\n",
               (unsigned long long)conn, (int)len, (const char *)data,
               cbx_message_group(m),
               (unsigned long long)cbx_message_offset(m));
        cbx_message_free(m); /* the host owns received messages */
    }

    /* Nothing more is pending: CBX_EMPTY right away with timeout 0. */
    if (cbx_conn_recv(hub, bob, 0, &none) != CBX_EMPTY) {
        fprintf(stderr, "expected CBX_EMPTY\n");
        goto out;
    }

    /* The group's history, as JSON, for clients catching up. */
    TRY(cbx_history_json(hub, "lobby", 0, 0, &history));
    printf("history: %s\n", history);

    TRY(cbx_conn_close(hub, alice));
    TRY(cbx_conn_close(hub, bob));
    status = 0;
out:
    cbx_string_free(history); /* NULL is fine for every free function */
    cbx_hub_free(hub);
    return status;
}
