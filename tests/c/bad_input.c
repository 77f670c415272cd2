/*
 * Bad input at every entry point of include/channelbox.h: NULL pointers,
 * invalid UTF-8, invalid JSON, huge lengths, unknown kinds and flags,
 * unknown and stale connection ids, bad configs. Every failure must return
 * its code, set cbx_last_error(), leave out-parameters untouched, and change
 * nothing in the hub.
 */

#include <stdint.h>

#include "check.h"

/* Not valid UTF-8: a stray continuation byte, a truncated sequence, an
 * overlong encoding and an encoded surrogate. */
static const char *const BAD_UTF8[] = {"\xff\xfe", "abc\xc3", "\xc0\xaf",
                                       "\xed\xa0\x80"};
#define N_BAD_UTF8 (sizeof BAD_UTF8 / sizeof BAD_UTF8[0])

/* Not JSON, by several routes: empty, truncated, a bad token, a trailing
 * comma, trailing garbage. */
static const char *const BAD_JSON[] = {"",      "{",         "{\"a\":}", "nul",
                                       "[1,]",  "{} extra",  "'single'"};
#define N_BAD_JSON (sizeof BAD_JSON / sizeof BAD_JSON[0])

/* Kinds that are not CBX_JSON, CBX_TEXT or CBX_BINARY. */
static const cbx_kind BAD_KINDS[] = {0, 4, 255, UINT32_MAX};
#define N_BAD_KINDS (sizeof BAD_KINDS / sizeof BAD_KINDS[0])

/* What an out-parameter holds before a call that must not write it. */
#define SENTINEL_U64 UINT64_C(0xDEADBEEFCAFEF00D)
#define SENTINEL_PTR ((void *)(uintptr_t)0x5A5A5A5A)

static cbx_hub *new_hub(const char *config) {
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new(config, &hub));
    REQUIRE(hub != NULL);
    return hub;
}

static uint64_t open_conn(cbx_hub *hub, const char *user) {
    uint64_t id = 0;
    REQUIRE_OK(cbx_conn_open(hub, user, 0, &id));
    REQUIRE(id != 0);
    return id;
}

/* How many messages wait for `conn`, counted by draining it. */
static size_t drain(cbx_hub *hub, uint64_t conn) {
    size_t n = 0;
    cbx_message *m = NULL;
    while (cbx_conn_recv(hub, conn, 0, &m) == CBX_OK) {
        cbx_message_free(m);
        n++;
    }
    return n;
}

/* The number of messages in a group's history, from its JSON. */
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

static void hub_new_refuses_bad_configs(void) {
    static const struct {
        const char *config;
        cbx_result expected;
    } cases[] = {
        {"{", CBX_INVALID_JSON},
        {"not json", CBX_INVALID_JSON},
        {"{\"queue_max_messages\": 10,}", CBX_INVALID_JSON},
        {"{\"history_max_mesages\": 3}", CBX_INVALID_ARGUMENT},
        {"{\"no_such_key\": true}", CBX_INVALID_ARGUMENT},
        {"{\"queue_max_bytes\": \"big\"}", CBX_INVALID_ARGUMENT},
        {"{\"queue_max_messages\": -1}", CBX_INVALID_ARGUMENT},
        {"{\"queue_max_messages\": 1.5}", CBX_INVALID_ARGUMENT},
        {"{\"queue_max_bytes\": 0}", CBX_INVALID_ARGUMENT},
        {"{\"max_payload_bytes\": 0}", CBX_INVALID_ARGUMENT},
        {"{\"slow_consumer\": \"explode\"}", CBX_INVALID_ARGUMENT},
        {"{\"slow_consumer\": 1}", CBX_INVALID_ARGUMENT},
        {"[1]", CBX_INVALID_ARGUMENT},
        {"42", CBX_INVALID_ARGUMENT},
        {"null", CBX_INVALID_ARGUMENT},
        {"{\"history_max_messages\": 1} {}", CBX_INVALID_JSON},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cbx_hub *hub = (cbx_hub *)SENTINEL_PTR;
        CHECK_RC(cbx_hub_new(cases[i].config, &hub), cases[i].expected);
        CHECK(hub == (cbx_hub *)SENTINEL_PTR);
    }
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        cbx_hub *hub = (cbx_hub *)SENTINEL_PTR;
        CHECK_RC(cbx_hub_new(BAD_UTF8[i], &hub), CBX_INVALID_UTF8);
        CHECK(hub == (cbx_hub *)SENTINEL_PTR);
    }
    CHECK_RC(cbx_hub_new(NULL, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_new("{}", NULL), CBX_NULL_POINTER);
    CHECK_STR_CONTAINS(cbx_last_error(), "out");
}

static void hub_new_accepts_defaults_and_every_key(void) {
    static const char *const ok[] = {
        NULL, "", "{}", " { } ",
        "{\"history_max_messages\": 5, \"history_max_bytes\": 0,"
        " \"history_ttl_seconds\": 60, \"queue_max_messages\": 3,"
        " \"queue_max_bytes\": 4096, \"slow_consumer\": \"drop_oldest\","
        " \"max_payload_bytes\": 100, \"max_group_name_bytes\": 8,"
        " \"max_user_bytes\": 8}",
        "{\"slow_consumer\": \"disconnect\"}",
        "{\"slow_consumer\": \"drop_newest\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        cbx_hub *hub = NULL;
        CHECK_RC(cbx_hub_new(ok[i], &hub), CBX_OK);
        CHECK(hub != NULL);
        cbx_hub_free(hub);
    }
}

static void freeing_null_is_fine(void) {
    cbx_hub_free(NULL);
    cbx_message_free(NULL);
    cbx_string_free(NULL);
    cbx_messages_free(NULL, 0);
    cbx_messages_free(NULL, 5);
    cbx_message *none[3] = {NULL, NULL, NULL};
    cbx_messages_free(none, 3);
}

static void version_is_the_crate_version(void) {
    const char *v = cbx_version();
    REQUIRE(v != NULL);
    CHECK(v[0] >= '0' && v[0] <= '9');
    CHECK(strchr(v, '.') != NULL);
#ifdef CBX_EXPECTED_VERSION
    CHECK(strcmp(v, CBX_EXPECTED_VERSION) == 0);
#endif
    CHECK(cbx_version() == v); /* static */
}

static void result_names_cover_every_code(void) {
    static const struct {
        cbx_result code;
        const char *name;
    } codes[] = {
        {CBX_OK, "CBX_OK"},
        {CBX_EMPTY, "CBX_EMPTY"},
        {CBX_CLOSED, "CBX_CLOSED"},
        {CBX_INVALID_ARGUMENT, "CBX_INVALID_ARGUMENT"},
        {CBX_NULL_POINTER, "CBX_NULL_POINTER"},
        {CBX_INVALID_UTF8, "CBX_INVALID_UTF8"},
        {CBX_INVALID_JSON, "CBX_INVALID_JSON"},
        {CBX_TOO_LARGE, "CBX_TOO_LARGE"},
        {CBX_NO_SUCH_CONNECTION, "CBX_NO_SUCH_CONNECTION"},
        {CBX_NO_SUCH_MESSAGE, "CBX_NO_SUCH_MESSAGE"},
        {CBX_ENGINE_UNAVAILABLE, "CBX_ENGINE_UNAVAILABLE"},
        {CBX_STORAGE, "CBX_STORAGE"},
        {CBX_PANIC, "CBX_PANIC"},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *name = cbx_result_name(codes[i].code);
        REQUIRE(name != NULL);
        if (strcmp(name, codes[i].name) != 0) {
            fprintf(stderr, "cbx_result_name(%d) is \"%s\", expected \"%s\"\n",
                    (int)codes[i].code, name, codes[i].name);
            check_failures++;
        }
        /* Codes never collide with errno values. */
        CHECK(codes[i].code == CBX_OK || codes[i].code >= 7000);
    }
    /* 7201 was CBX_NO_SUCH_GROUP, never returned and now retired. */
    static const int32_t unknown[] = {-1, 1, 22, 7000, 7003, 7099, 7105,
                                      7201, 8000, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = cbx_result_name(unknown[i]);
        REQUIRE(name != NULL);
        CHECK(strcmp(name, "CBX_UNKNOWN") == 0);
    }
}

static void last_error_is_set_on_failure_and_cleared_on_success(void) {
    cbx_hub *hub = new_hub(NULL);
    CHECK(strcmp(cbx_last_error(), "") == 0);
    CHECK_RC(cbx_conn_close(hub, 424242), CBX_NO_SUCH_CONNECTION);
    CHECK_STR_CONTAINS(cbx_last_error(), "424242");
    /* The message stays until the next call on this thread. */
    CHECK_STR_CONTAINS(cbx_last_error(), "424242");
    CHECK_RC(cbx_groups_flush(hub), CBX_OK);
    CHECK(strcmp(cbx_last_error(), "") == 0);
    CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, BYTES("{"), 0, NULL),
             CBX_INVALID_JSON);
    CHECK(strlen(cbx_last_error()) > 0);
    uint64_t c = 0;
    CHECK_RC(cbx_conn_open(hub, NULL, 0, &c), CBX_OK);
    CHECK(strcmp(cbx_last_error(), "") == 0);
    cbx_hub_free(hub);
}

static void conn_open_refuses_bad_input(void) {
    cbx_hub *hub = new_hub("{\"max_user_bytes\": 8}");
    uint64_t out = SENTINEL_U64;
    CHECK_RC(cbx_conn_open(NULL, NULL, 0, &out), CBX_NULL_POINTER);
    CHECK_STR_CONTAINS(cbx_last_error(), "hub");
    CHECK_RC(cbx_conn_open(hub, NULL, 0, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_open(hub, "alice", 0, NULL), CBX_NULL_POINTER);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_conn_open(hub, BAD_UTF8[i], 0, &out), CBX_INVALID_UTF8);
    }
    CHECK_RC(cbx_conn_open(hub, "", 0, &out), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_conn_open(hub, "123456789", 0, &out), CBX_TOO_LARGE);
    CHECK(out == SENTINEL_U64);
    CHECK_RC(cbx_conn_open(hub, "12345678", UINT32_MAX, &out), CBX_OK);
    CHECK(out != SENTINEL_U64 && out != 0);
    /* Nothing was opened by the failures: one connection, one user. */
    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    CHECK_STR_CONTAINS(stats, "\"connections\":1");
    CHECK_STR_CONTAINS(stats, "\"users\":1");
    cbx_string_free(stats);
    cbx_hub_free(hub);
}

static void ids_are_never_reused(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, "alice");
    CHECK_RC(cbx_conn_close(hub, a), CBX_OK);
    uint64_t b = open_conn(hub, "alice");
    CHECK(b != a);
    /* Double close and a stale id. */
    CHECK_RC(cbx_conn_close(hub, a), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_close(hub, 0), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_close(hub, UINT64_MAX), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_close(NULL, b), CBX_NULL_POINTER);
    /* The stale id names nothing, everywhere. */
    cbx_message *m = (cbx_message *)SENTINEL_PTR;
    CHECK_RC(cbx_conn_send(hub, a, CBX_TEXT, BYTES("hi")),
             CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_recv(hub, a, 0, &m), CBX_NO_SUCH_CONNECTION);
    CHECK(m == (cbx_message *)SENTINEL_PTR);
    cbx_message *batch[4] = {NULL, NULL, NULL, NULL};
    size_t n = 77;
    CHECK_RC(cbx_conn_recv_batch(hub, a, batch, 4, &n), CBX_NO_SUCH_CONNECTION);
    CHECK(n == 77 && batch[0] == NULL);
    char *reason = (char *)SENTINEL_PTR;
    cbx_close_code why = 12345;
    uint32_t host_code = 12345;
    CHECK_RC(cbx_conn_close_reason(hub, a, &why, &host_code, &reason),
             CBX_NO_SUCH_CONNECTION);
    CHECK(reason == (char *)SENTINEL_PTR);
    CHECK(why == 12345 && host_code == 12345);
    CHECK_RC(cbx_group_add(hub, a, "g"), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_group_remove(hub, a, "g"), CBX_NO_SUCH_CONNECTION);
    /* b still works; the close of a did not touch it. */
    CHECK_RC(cbx_conn_send(hub, b, CBX_TEXT, BYTES("hi")), CBX_OK);
    CHECK(drain(hub, b) == 1);
    CHECK_RC(cbx_conn_close(hub, b), CBX_OK);
    CHECK_RC(cbx_conn_close(hub, b), CBX_NO_SUCH_CONNECTION);
    cbx_hub_free(hub);
}

static void conn_send_refuses_bad_input(void) {
    cbx_hub *hub = new_hub("{\"max_payload_bytes\": 16}");
    uint64_t c = open_conn(hub, NULL);
    const uint8_t small[4] = {'"', 'x', '"', 0};
    CHECK_RC(cbx_conn_send(NULL, c, CBX_TEXT, BYTES("hi")), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, NULL, 3), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, small, SIZE_MAX), CBX_TOO_LARGE);
    CHECK_RC(cbx_conn_send(hub, c, CBX_JSON, small, SIZE_MAX), CBX_TOO_LARGE);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, small, SIZE_MAX / 2 + 1),
             CBX_TOO_LARGE);
    uint8_t big[17];
    memset(big, 'a', sizeof big);
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, big, 17), CBX_TOO_LARGE);
    for (size_t i = 0; i < N_BAD_KINDS; i++) {
        CHECK_RC(cbx_conn_send(hub, c, BAD_KINDS[i], BYTES("1")),
                 CBX_INVALID_ARGUMENT);
    }
    for (size_t i = 0; i < N_BAD_JSON; i++) {
        CHECK_RC(cbx_conn_send(hub, c, CBX_JSON, BYTES(BAD_JSON[i])),
                 CBX_INVALID_JSON);
    }
    CHECK_RC(cbx_conn_send(hub, c, CBX_JSON, NULL, 0), CBX_INVALID_JSON);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, BYTES(BAD_UTF8[i])),
                 CBX_INVALID_UTF8);
    }
    CHECK_RC(cbx_conn_send(hub, 999999, CBX_TEXT, BYTES("hi")),
             CBX_NO_SUCH_CONNECTION);
    /* Nothing of that reached the queue. */
    CHECK(drain(hub, c) == 0);
    /* Edge cases that are fine: empty text and binary (NULL data with len
     * 0), exactly the payload limit, bytes that are not UTF-8 as binary. */
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, NULL, 0), CBX_OK);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, NULL, 0), CBX_OK);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, big, 16), CBX_OK);
    CHECK_RC(cbx_conn_send(hub, c, CBX_BINARY, BYTES(BAD_UTF8[0])), CBX_OK);
    CHECK(drain(hub, c) == 4);
    /* Closed by the hub: CBX_CLOSED, not "no such connection". */
    REQUIRE_OK(cbx_close_all(hub));
    CHECK_RC(cbx_conn_send(hub, c, CBX_TEXT, BYTES("late")), CBX_CLOSED);
    cbx_hub_free(hub);
}

static void conn_recv_refuses_bad_input(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    cbx_message *m = (cbx_message *)SENTINEL_PTR;
    CHECK_RC(cbx_conn_recv(NULL, c, 0, &m), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv(hub, c, 0, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv(hub, 999999, 0, &m), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_EMPTY);
    CHECK_RC(cbx_conn_recv(hub, c, 10, &m), CBX_EMPTY);
    CHECK(m == (cbx_message *)SENTINEL_PTR);
    /* A NULL out must not swallow a pending message. */
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("kept")));
    CHECK_RC(cbx_conn_recv(hub, c, 0, NULL), CBX_NULL_POINTER);
    CHECK(drain(hub, c) == 1);

    cbx_message *batch[2] = {(cbx_message *)SENTINEL_PTR,
                             (cbx_message *)SENTINEL_PTR};
    size_t n = 77;
    CHECK_RC(cbx_conn_recv_batch(NULL, c, batch, 2, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv_batch(hub, c, NULL, 2, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 2, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 0, &n), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_conn_recv_batch(hub, 999999, batch, 2, &n),
             CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 2, &n), CBX_EMPTY);
    CHECK(n == 77);
    CHECK(batch[0] == (cbx_message *)SENTINEL_PTR);
    CHECK(batch[1] == (cbx_message *)SENTINEL_PTR);
    /* Failed batch calls leave pending messages pending. */
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("kept")));
    CHECK_RC(cbx_conn_recv_batch(hub, c, NULL, 2, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 2, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 0, &n), CBX_INVALID_ARGUMENT);
    CHECK(drain(hub, c) == 1);

    char *reason = (char *)SENTINEL_PTR;
    cbx_close_code why = 12345;
    uint32_t host_code = 12345;
    CHECK_RC(cbx_conn_close_reason(NULL, c, &why, &host_code, &reason),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_close_reason(hub, c, NULL, &host_code, &reason),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_close_reason(hub, c, &why, NULL, &reason),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_close_reason(hub, c, &why, &host_code, NULL),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_conn_close_reason(hub, 999999, &why, &host_code, &reason),
             CBX_NO_SUCH_CONNECTION);
    /* Failed calls leave every out-parameter as it was. */
    CHECK(reason == (char *)SENTINEL_PTR);
    CHECK(why == 12345 && host_code == 12345);
    CHECK_RC(cbx_conn_close_reason(hub, c, &why, &host_code, &reason), CBX_OK);
    REQUIRE(reason != NULL && reason != (char *)SENTINEL_PTR);
    CHECK(why == CBX_CLOSE_NONE && host_code == 0);
    CHECK(strcmp(reason, "") == 0);
    cbx_string_free(reason);
    cbx_hub_free(hub);
}

static void group_membership_refuses_bad_input(void) {
    cbx_hub *hub = new_hub("{\"max_group_name_bytes\": 8}");
    uint64_t c = open_conn(hub, NULL);
    CHECK_RC(cbx_group_add(NULL, c, "g"), CBX_NULL_POINTER);
    CHECK_RC(cbx_group_add(hub, c, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_group_add(hub, c, ""), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_group_add(hub, c, "123456789"), CBX_TOO_LARGE);
    CHECK_RC(cbx_group_add(hub, 999999, "g"), CBX_NO_SUCH_CONNECTION);
    CHECK_RC(cbx_group_remove(NULL, c, "g"), CBX_NULL_POINTER);
    CHECK_RC(cbx_group_remove(hub, c, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_group_remove(hub, c, ""), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_group_remove(hub, c, "123456789"), CBX_TOO_LARGE);
    CHECK_RC(cbx_group_remove(hub, 999999, "g"), CBX_NO_SUCH_CONNECTION);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_group_add(hub, c, BAD_UTF8[i]), CBX_INVALID_UTF8);
        CHECK_RC(cbx_group_remove(hub, c, BAD_UTF8[i]), CBX_INVALID_UTF8);
    }
    /* None of it made a group. */
    char *groups = NULL;
    REQUIRE_OK(cbx_groups_json(hub, &groups));
    CHECK(strcmp(groups, "{}") == 0);
    cbx_string_free(groups);
    /* Idempotent add; removing a non-member is fine. */
    CHECK_RC(cbx_group_add(hub, c, "12345678"), CBX_OK);
    CHECK_RC(cbx_group_add(hub, c, "12345678"), CBX_OK);
    CHECK_RC(cbx_group_remove(hub, c, "other"), CBX_OK);
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "12345678", CBX_TEXT, BYTES("x"), 0, &r));
    CHECK(r.delivered == 1);
    CHECK_RC(cbx_group_remove(hub, c, "12345678"), CBX_OK);
    CHECK_RC(cbx_group_remove(hub, c, "12345678"), CBX_OK);
    /* Closed by the hub: joining is refused with CBX_CLOSED. */
    REQUIRE_OK(cbx_close_all(hub));
    CHECK_RC(cbx_group_add(hub, c, "g"), CBX_CLOSED);
    cbx_hub_free(hub);
}

/* Every bad group send leaves the receiver's queue and the history empty. */
static void group_send_refuses_bad_input_and_delivers_nothing(void) {
    cbx_hub *hub = new_hub("{\"max_payload_bytes\": 64}");
    uint64_t rx = open_conn(hub, "bob");
    REQUIRE_OK(cbx_group_add(hub, rx, "g"));
    cbx_send_report report = {11, 22, 33, 44};
    const uint8_t small[2] = {'{', '}'};
    const uint32_t S = CBX_SAVE_HISTORY;

    CHECK_RC(cbx_group_send(NULL, "g", CBX_JSON, BYTES("{}"), S, &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_group_send(hub, NULL, CBX_JSON, BYTES("{}"), S, &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_group_send(hub, "", CBX_JSON, BYTES("{}"), S, &report),
             CBX_INVALID_ARGUMENT);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0'; /* 299 bytes; the limit is 256 */
    CHECK_RC(cbx_group_send(hub, long_name, CBX_JSON, BYTES("{}"), S, &report),
             CBX_TOO_LARGE);
    char *json = NULL;
    CHECK_RC(cbx_history_json(hub, long_name, 0, 0, &json), CBX_TOO_LARGE);
    CHECK(json == NULL);
    CHECK_RC(cbx_group_send(hub, "g", CBX_BINARY, NULL, 1, S, &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_group_send(hub, "g", CBX_BINARY, small, SIZE_MAX, S, &report),
             CBX_TOO_LARGE);
    CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, small, SIZE_MAX, S, &report),
             CBX_TOO_LARGE);
    CHECK_RC(cbx_group_send(hub, "g", CBX_TEXT, small, 65, S, &report),
             CBX_TOO_LARGE);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_group_send(hub, BAD_UTF8[i], CBX_JSON, BYTES("{}"), S,
                                &report),
                 CBX_INVALID_UTF8);
        CHECK_RC(cbx_group_send(hub, "g", CBX_TEXT, BYTES(BAD_UTF8[i]), S,
                                &report),
                 CBX_INVALID_UTF8);
        CHECK_RC(cbx_group_send(hub, "g", CBX_TEXT, BYTES(BAD_UTF8[i]), 0,
                                NULL),
                 CBX_INVALID_UTF8);
    }
    for (size_t i = 0; i < N_BAD_JSON; i++) {
        CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, BYTES(BAD_JSON[i]), S,
                                &report),
                 CBX_INVALID_JSON);
        CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, BYTES(BAD_JSON[i]), 0,
                                NULL),
                 CBX_INVALID_JSON);
        /* Refused even when the group does not exist. */
        CHECK_RC(cbx_group_send(hub, "nobody", CBX_JSON, BYTES(BAD_JSON[i]), 0,
                                NULL),
                 CBX_INVALID_JSON);
    }
    for (size_t i = 0; i < N_BAD_KINDS; i++) {
        CHECK_RC(cbx_group_send(hub, "g", BAD_KINDS[i], BYTES("{}"), S,
                                &report),
                 CBX_INVALID_ARGUMENT);
    }
    static const uint32_t bad_flags[] = {2, 3, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, BYTES("{}"), bad_flags[i],
                                &report),
                 CBX_INVALID_ARGUMENT);
    }
    /* The report was never written, nothing was delivered or saved. */
    CHECK(report.delivered == 11 && report.dropped == 22);
    CHECK(report.offset == 33 && report.disconnected == 44);
    CHECK(drain(hub, rx) == 0);
    CHECK(history_count(hub, "g") == 0);
    REQUIRE_OK(cbx_history_json(hub, "g", 0, 0, &json));
    CHECK_STR_CONTAINS(json, "\"last_offset\":0");
    cbx_string_free(json);
    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    CHECK_STR_CONTAINS(stats, "\"deliveries\":0");
    CHECK_STR_CONTAINS(stats, "\"history_messages\":0");
    cbx_string_free(stats);
    /* The next good send gets offset 1: refusals used no offset. */
    CHECK_RC(cbx_group_send(hub, "g", CBX_JSON, BYTES("{}"), S, &report),
             CBX_OK);
    CHECK(report.offset == 1 && report.delivered == 1);
    CHECK(drain(hub, rx) == 1);
    cbx_hub_free(hub);
}

static void user_send_refuses_bad_input(void) {
    cbx_hub *hub = new_hub("{\"max_payload_bytes\": 64, \"max_user_bytes\": 8}");
    uint64_t c = open_conn(hub, "alice");
    cbx_send_report report = {11, 22, 33, 44};
    const uint8_t small[2] = {'{', '}'};
    CHECK_RC(cbx_user_send(NULL, "alice", CBX_TEXT, BYTES("x"), &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_user_send(hub, NULL, CBX_TEXT, BYTES("x"), &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_user_send(hub, "", CBX_TEXT, BYTES("x"), &report),
             CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_user_send(hub, "123456789", CBX_TEXT, BYTES("x"), &report),
             CBX_TOO_LARGE);
    CHECK_RC(cbx_user_send(hub, "alice", CBX_BINARY, NULL, 1, &report),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_user_send(hub, "alice", CBX_BINARY, small, SIZE_MAX, &report),
             CBX_TOO_LARGE);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_user_send(hub, BAD_UTF8[i], CBX_TEXT, BYTES("x"), &report),
                 CBX_INVALID_UTF8);
        CHECK_RC(cbx_user_send(hub, "alice", CBX_TEXT, BYTES(BAD_UTF8[i]),
                               &report),
                 CBX_INVALID_UTF8);
    }
    for (size_t i = 0; i < N_BAD_JSON; i++) {
        CHECK_RC(cbx_user_send(hub, "alice", CBX_JSON, BYTES(BAD_JSON[i]),
                               &report),
                 CBX_INVALID_JSON);
    }
    for (size_t i = 0; i < N_BAD_KINDS; i++) {
        CHECK_RC(cbx_user_send(hub, "alice", BAD_KINDS[i], BYTES("x"), &report),
                 CBX_INVALID_ARGUMENT);
    }
    CHECK(report.delivered == 11 && report.dropped == 22);
    CHECK(report.offset == 33 && report.disconnected == 44);
    CHECK(drain(hub, c) == 0);
    /* A user with no connection gets nothing, and that is not an error. */
    CHECK_RC(cbx_user_send(hub, "nobody", CBX_TEXT, BYTES("x"), &report),
             CBX_OK);
    CHECK(report.delivered == 0 && report.offset == 0);
    CHECK_RC(cbx_user_send(hub, "alice", CBX_TEXT, BYTES("x"), NULL), CBX_OK);
    CHECK(drain(hub, c) == 1);
    cbx_hub_free(hub);
}

static void history_calls_refuse_bad_input(void) {
    cbx_hub *hub = new_hub("{\"max_payload_bytes\": 64}");
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_JSON, BYTES("{\"v\":1}"),
                              CBX_SAVE_HISTORY, &r));
    REQUIRE(r.offset == 1);
    const uint8_t small[2] = {'{', '}'};

    char *json = (char *)SENTINEL_PTR;
    CHECK_RC(cbx_history_json(NULL, "g", 0, 0, &json), CBX_NULL_POINTER);
    CHECK_RC(cbx_history_json(hub, "g", 0, 0, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_history_json(hub, NULL, 0, 0, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_history_json(hub, "", 0, 0, &json), CBX_INVALID_ARGUMENT);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_history_json(hub, BAD_UTF8[i], 0, 0, &json),
                 CBX_INVALID_UTF8);
    }
    CHECK(json == (char *)SENTINEL_PTR);

    CHECK_RC(cbx_history_replace(NULL, "g", 1, CBX_JSON, BYTES("2")),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_history_replace(hub, NULL, 1, CBX_JSON, BYTES("2")),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_history_replace(hub, "", 1, CBX_JSON, BYTES("2")),
             CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_history_replace(hub, "g", 1, CBX_BINARY, NULL, 1),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_history_replace(hub, "g", 1, CBX_BINARY, small, SIZE_MAX),
             CBX_TOO_LARGE);
    for (size_t i = 0; i < N_BAD_KINDS; i++) {
        CHECK_RC(cbx_history_replace(hub, "g", 1, BAD_KINDS[i], BYTES("2")),
                 CBX_INVALID_ARGUMENT);
    }
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_history_replace(hub, BAD_UTF8[i], 1, CBX_JSON, BYTES("2")),
                 CBX_INVALID_UTF8);
        CHECK_RC(cbx_history_replace(hub, "g", 1, CBX_TEXT, BYTES(BAD_UTF8[i])),
                 CBX_INVALID_UTF8);
    }
    for (size_t i = 0; i < N_BAD_JSON; i++) {
        CHECK_RC(cbx_history_replace(hub, "g", 1, CBX_JSON, BYTES(BAD_JSON[i])),
                 CBX_INVALID_JSON);
    }
    CHECK_RC(cbx_history_replace(hub, "g", 0, CBX_JSON, BYTES("2")),
             CBX_NO_SUCH_MESSAGE);
    CHECK_RC(cbx_history_replace(hub, "g", 2, CBX_JSON, BYTES("2")),
             CBX_NO_SUCH_MESSAGE);
    CHECK_RC(cbx_history_replace(hub, "g", UINT64_MAX, CBX_JSON, BYTES("2")),
             CBX_NO_SUCH_MESSAGE);
    CHECK_RC(cbx_history_replace(hub, "nobody", 1, CBX_JSON, BYTES("2")),
             CBX_NO_SUCH_MESSAGE);
    /* The entry is as it was saved. */
    REQUIRE_OK(cbx_history_json(hub, "g", 0, 0, &json));
    CHECK_STR_CONTAINS(json, "\"payload\":{\"v\":1}");
    cbx_string_free(json);

    CHECK_RC(cbx_history_flush(NULL, "g"), CBX_NULL_POINTER);
    CHECK_RC(cbx_history_flush(NULL, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_history_flush(hub, ""), CBX_INVALID_ARGUMENT);
    for (size_t i = 0; i < N_BAD_UTF8; i++) {
        CHECK_RC(cbx_history_flush(hub, BAD_UTF8[i]), CBX_INVALID_UTF8);
    }
    CHECK(history_count(hub, "g") == 1);
    /* Flushing a group that never existed changes nothing. */
    CHECK_RC(cbx_history_flush(hub, "nobody"), CBX_OK);
    CHECK(history_count(hub, "g") == 1);
    cbx_hub_free(hub);
}

static void hub_calls_refuse_null(void) {
    cbx_hub *hub = new_hub(NULL);
    char *s = (char *)SENTINEL_PTR;
    CHECK_RC(cbx_groups_json(NULL, &s), CBX_NULL_POINTER);
    CHECK_RC(cbx_groups_json(hub, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_stats_json(NULL, &s), CBX_NULL_POINTER);
    CHECK_RC(cbx_stats_json(hub, NULL), CBX_NULL_POINTER);
    CHECK(s == (char *)SENTINEL_PTR);
    CHECK_RC(cbx_groups_flush(NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_close_all(NULL), CBX_NULL_POINTER);

    /* cbx_hub_ready_fd returns -1 (not a code) and sets the last error. */
    REQUIRE_OK(cbx_groups_flush(hub));
    CHECK(cbx_hub_ready_fd(NULL) == -1);
    CHECK(strlen(cbx_last_error()) > 0);
    int fd = cbx_hub_ready_fd(hub);
    CHECK(fd >= 0);
    CHECK(strcmp(cbx_last_error(), "") == 0);
    CHECK(cbx_hub_ready_fd(hub) == fd); /* one fd for the hub's life */

    uint64_t ids[4] = {SENTINEL_U64, SENTINEL_U64, SENTINEL_U64, SENTINEL_U64};
    size_t n = 77;
    CHECK_RC(cbx_hub_take_ready(NULL, ids, 4, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_take_ready(hub, NULL, 4, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 4, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 0, &n), CBX_INVALID_ARGUMENT);
    CHECK(n == 77 && ids[0] == SENTINEL_U64);
    /* Failed takes do not lose a ready connection. */
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("x")));
    CHECK_RC(cbx_hub_take_ready(hub, NULL, 4, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 4, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 0, &n), CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 4, &n), CBX_OK);
    CHECK(n == 1 && ids[0] == c && ids[1] == SENTINEL_U64);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 4, &n), CBX_OK);
    CHECK(n == 0);
    cbx_hub_free(hub);
}

static void recv_ready_refuses_bad_input(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t conns[4] = {SENTINEL_U64, SENTINEL_U64, SENTINEL_U64,
                         SENTINEL_U64};
    cbx_message *messages[4] = {SENTINEL_PTR, SENTINEL_PTR, SENTINEL_PTR,
                                SENTINEL_PTR};
    size_t n = 77;
    CHECK_RC(cbx_hub_recv_ready(NULL, conns, messages, 4, &n),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, &n), CBX_EMPTY);
    CHECK(n == 77);
    /* Failed calls write nothing and lose no ready connection. */
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("x")));
    CHECK_RC(cbx_hub_recv_ready(hub, NULL, messages, 4, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, NULL, 4, &n), CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, NULL),
             CBX_NULL_POINTER);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 0, &n),
             CBX_INVALID_ARGUMENT);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, SIZE_MAX, &n),
             CBX_TOO_LARGE);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, SIZE_MAX / 8 + 1, &n),
             CBX_TOO_LARGE);
    CHECK(n == 77 && conns[0] == SENTINEL_U64 && messages[0] == SENTINEL_PTR);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, &n), CBX_OK);
    CHECK(n == 1 && conns[0] == c && messages[0] != NULL);
    CHECK(conns[1] == SENTINEL_U64 && messages[1] == SENTINEL_PTR);
    cbx_messages_free(messages, 1);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, &n), CBX_EMPTY);
    cbx_hub_free(hub);
}

static void message_accessors_accept_null(void) {
    size_t len = 77;
    CHECK(cbx_message_kind(NULL) == 0);
    CHECK(cbx_message_data(NULL, &len) == NULL);
    CHECK(len == 0);
    CHECK(cbx_message_data(NULL, NULL) == NULL);
    const char *g = cbx_message_group(NULL);
    CHECK(g != NULL && strcmp(g, "") == 0);
    CHECK(cbx_message_offset(NULL) == 0);
    CHECK(cbx_message_ts_ms(NULL) == 0);
}

static void message_views_refuse_bad_input(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("one")));
    cbx_message *m = NULL;
    REQUIRE_OK(cbx_conn_recv(hub, c, 0, &m));

    cbx_message_view views[2];
    memset(views, 0xAB, sizeof views);
    const cbx_message *list[2] = {m, NULL};
    /* n == 0 touches nothing, whatever the pointers. */
    CHECK_RC(cbx_message_views(NULL, 0, NULL), CBX_OK);
    CHECK_RC(cbx_message_views(NULL, 1, views), CBX_NULL_POINTER);
    CHECK_RC(cbx_message_views(list, 1, NULL), CBX_NULL_POINTER);
    CHECK_RC(cbx_message_views(list, 2, views), CBX_INVALID_ARGUMENT);
    CHECK_STR_CONTAINS(cbx_last_error(), "messages[1]");
    /* A count no array can hold is refused before anything is read. */
    CHECK_RC(cbx_message_views(list, SIZE_MAX, views), CBX_TOO_LARGE);
    CHECK_RC(cbx_message_views(list, SIZE_MAX / 16, views), CBX_TOO_LARGE);
    cbx_messages_free((cbx_message **)list, SIZE_MAX); /* frees nothing */
    /* A failed call wrote no view, not even the good first one. */
    const unsigned char *bytes = (const unsigned char *)views;
    int untouched = 1;
    for (size_t i = 0; i < sizeof views; i++) {
        untouched &= bytes[i] == 0xAB;
    }
    CHECK(untouched);
    CHECK_RC(cbx_message_views(list, 1, views), CBX_OK);
    CHECK(views[0].kind == CBX_TEXT && views[0].len == 3);
    CHECK(memcmp(views[0].data, "one", 3) == 0);
    CHECK(strcmp(views[0].group, "") == 0 && views[0].offset == 0);
    cbx_message *owned[2] = {m, NULL};
    cbx_messages_free(owned, 2);
    cbx_hub_free(hub);
}

int main(void) {
    RUN(hub_new_refuses_bad_configs);
    RUN(hub_new_accepts_defaults_and_every_key);
    RUN(freeing_null_is_fine);
    RUN(version_is_the_crate_version);
    RUN(result_names_cover_every_code);
    RUN(last_error_is_set_on_failure_and_cleared_on_success);
    RUN(conn_open_refuses_bad_input);
    RUN(ids_are_never_reused);
    RUN(conn_send_refuses_bad_input);
    RUN(conn_recv_refuses_bad_input);
    RUN(group_membership_refuses_bad_input);
    RUN(group_send_refuses_bad_input_and_delivers_nothing);
    RUN(user_send_refuses_bad_input);
    RUN(history_calls_refuse_bad_input);
    RUN(hub_calls_refuse_null);
    RUN(recv_ready_refuses_bad_input);
    RUN(message_accessors_accept_null);
    RUN(message_views_refuse_bad_input);
    return check_summary();
}
