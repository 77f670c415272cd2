/*
 * What the C API does when used as documented: group sends with history
 * offsets, history JSON, replace and flush, slow consumers, user sends,
 * presence, the readiness fd with poll(), timeouts, batches and TTLs.
 */

#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static cbx_hub *new_hub(const char *config) {
    cbx_hub *hub = NULL;
    REQUIRE_OK(cbx_hub_new(config, &hub));
    REQUIRE(hub != NULL);
    return hub;
}

static uint64_t open_conn(cbx_hub *hub, const char *user) {
    uint64_t id = 0;
    REQUIRE_OK(cbx_conn_open(hub, user, 0, &id));
    return id;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Receives one message that must be there, and checks its payload. */
static cbx_message *recv_expect(cbx_hub *hub, uint64_t conn, cbx_kind kind,
                                const char *payload) {
    cbx_message *m = NULL;
    cbx_result rc = cbx_conn_recv(hub, conn, 0, &m);
    if (rc != CBX_OK) {
        fprintf(stderr, "recv on %llu for \"%s\": %s (%s)\n",
                (unsigned long long)conn, payload, cbx_result_name(rc),
                cbx_last_error());
        check_failures++;
        return NULL;
    }
    size_t len = 0;
    const uint8_t *data = cbx_message_data(m, &len);
    CHECK(cbx_message_kind(m) == kind);
    if (len != strlen(payload) || memcmp(data, payload, len) != 0) {
        fprintf(stderr, "recv on %llu: got \"%.*s\", expected \"%s\"\n",
                (unsigned long long)conn, (int)len, (const char *)data,
                payload);
        check_failures++;
    }
    return m;
}

static size_t drain(cbx_hub *hub, uint64_t conn) {
    size_t n = 0;
    cbx_message *m = NULL;
    while (cbx_conn_recv(hub, conn, 0, &m) == CBX_OK) {
        cbx_message_free(m);
        n++;
    }
    return n;
}

static size_t count_of(const char *haystack, const char *needle) {
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

/* The epoch string of a one-group history JSON, copied into `out`. */
static void epoch_of(const char *json, char *out, size_t cap) {
    const char *p = strstr(json, "\"epoch\":\"");
    REQUIRE(p != NULL);
    p += strlen("\"epoch\":\"");
    size_t n = strcspn(p, "\"");
    REQUIRE(n > 0 && n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        CHECK(out[i] >= '0' && out[i] <= '9'); /* a decimal string */
    }
}

static char *history(cbx_hub *hub, const char *group, uint64_t since,
                     uint32_t limit) {
    char *json = NULL;
    REQUIRE_OK(cbx_history_json(hub, group, since, limit, &json));
    REQUIRE(json != NULL);
    return json;
}

static void group_send_reaches_members_with_offsets_from_1(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, "alice");
    uint64_t b = open_conn(hub, "bob");
    uint64_t outsider = open_conn(hub, "carol");
    REQUIRE_OK(cbx_group_add(hub, a, "chat"));
    REQUIRE_OK(cbx_group_add(hub, b, "chat"));
    uint64_t before = now_ms();
    static const char *const payloads[] = {"{\"n\":1}", "{\"n\":2}",
                                           "{\"n\":3}"};
    for (uint64_t i = 0; i < 3; i++) {
        cbx_send_report r = {0, 0, 0, 0};
        CHECK_RC(cbx_group_send(hub, "chat", CBX_JSON, BYTES(payloads[i]),
                                CBX_SAVE_HISTORY, &r),
                 CBX_OK);
        CHECK(r.offset == i + 1);
        CHECK(r.delivered == 2 && r.dropped == 0 && r.disconnected == 0);
    }
    uint64_t after = now_ms();
    uint64_t members[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        for (uint64_t i = 0; i < 3; i++) {
            cbx_message *m = recv_expect(hub, members[k], CBX_JSON, payloads[i]);
            if (m == NULL) {
                continue;
            }
            CHECK(cbx_message_offset(m) == i + 1);
            CHECK(strcmp(cbx_message_group(m), "chat") == 0);
            CHECK(cbx_message_ts_ms(m) + 1000 >= before);
            CHECK(cbx_message_ts_ms(m) <= after + 1000);
            cbx_message_free(m);
        }
        CHECK(drain(hub, members[k]) == 0);
    }
    CHECK(drain(hub, outsider) == 0);
    /* Offsets are per group: another group starts at 1. */
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "other", CBX_TEXT, BYTES("x"),
                              CBX_SAVE_HISTORY, &r));
    CHECK(r.offset == 1 && r.delivered == 0);
    cbx_hub_free(hub);
}

static void only_saved_messages_get_offsets(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, a, "g"));
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("live"), 0, &r));
    CHECK(r.offset == 0 && r.delivered == 1);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("saved"),
                              CBX_SAVE_HISTORY, &r));
    CHECK(r.offset == 1);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("live"), 0, &r));
    CHECK(r.offset == 0);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("saved"),
                              CBX_SAVE_HISTORY, &r));
    CHECK(r.offset == 2);
    static const uint64_t offsets[] = {0, 1, 0, 2};
    static const char *const texts[] = {"live", "saved", "live", "saved"};
    for (int i = 0; i < 4; i++) {
        cbx_message *m = recv_expect(hub, a, CBX_TEXT, texts[i]);
        CHECK(m != NULL && cbx_message_offset(m) == offsets[i]);
        cbx_message_free(m);
    }
    char *json = history(hub, "g", 0, 0);
    CHECK(count_of(json, "\"offset\":") == 2);
    CHECK(count_of(json, "live") == 0);
    CHECK_STR_CONTAINS(json, "\"last_offset\":2");
    cbx_string_free(json);
    /* Direct sends carry no group and no offset. */
    REQUIRE_OK(cbx_conn_send(hub, a, CBX_BINARY, BYTES("raw")));
    cbx_message *m = recv_expect(hub, a, CBX_BINARY, "raw");
    CHECK(m != NULL && cbx_message_offset(m) == 0);
    CHECK(strcmp(cbx_message_group(m), "") == 0);
    cbx_message_free(m);
    cbx_hub_free(hub);
}

static void history_json_has_the_documented_shape(void) {
    cbx_hub *hub = new_hub(NULL);
    const uint8_t bin[3] = {0, 1, 2};
    REQUIRE_OK(cbx_group_send(hub, "room", CBX_JSON,
                              BYTES("{\"text\": \"hi\", \"n\": [1, 2]}"),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_group_send(hub, "room", CBX_TEXT, BYTES("plain \"quoted\""),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_group_send(hub, "room", CBX_BINARY, bin, sizeof bin,
                              CBX_SAVE_HISTORY, NULL));
    char *json = history(hub, "room", 0, 0);
    CHECK(json[0] == '{');
    CHECK_STR_CONTAINS(json, "\"group\":\"room\"");
    CHECK_STR_CONTAINS(json, "\"epoch\":\"");
    CHECK_STR_CONTAINS(json, "\"first_offset\":1");
    CHECK_STR_CONTAINS(json, "\"last_offset\":3");
    CHECK_STR_CONTAINS(json, "\"messages\":[{");
    CHECK(count_of(json, "\"ts_ms\":") == 3);
    /* json payloads are JSON values embedded exactly as sent, text a
       string, binary base64. */
    CHECK_STR_CONTAINS(json, "\"kind\":\"json\"");
    CHECK_STR_CONTAINS(json, "\"payload\":{\"text\": \"hi\", \"n\": [1, 2]}");
    CHECK_STR_CONTAINS(json, "\"kind\":\"text\"");
    CHECK_STR_CONTAINS(json, "\"payload\":\"plain \\\"quoted\\\"\"");
    CHECK_STR_CONTAINS(json, "\"kind\":\"binary\"");
    CHECK_STR_CONTAINS(json, "\"payload\":\"AAEC\"");
    /* Oldest first. */
    const char *o1 = strstr(json, "\"offset\":1");
    const char *o3 = strstr(json, "\"offset\":3");
    CHECK(o1 != NULL && o3 != NULL && o1 < o3);
    cbx_string_free(json);

    /* since_offset: only newer messages; limit: the newest ones. */
    json = history(hub, "room", 1, 0);
    CHECK(count_of(json, "\"offset\":") == 2);
    CHECK(strstr(json, "\"offset\":1,") == NULL);
    cbx_string_free(json);
    json = history(hub, "room", 0, 1);
    CHECK(count_of(json, "\"offset\":") == 1);
    CHECK_STR_CONTAINS(json, "\"offset\":3");
    CHECK_STR_CONTAINS(json, "\"first_offset\":1");
    cbx_string_free(json);
    json = history(hub, "room", 3, 0);
    CHECK_STR_CONTAINS(json, "\"messages\":[]");
    cbx_string_free(json);

    /* A group that never saved anything reads as empty. */
    json = history(hub, "never", 0, 0);
    CHECK_STR_CONTAINS(json, "\"group\":\"never\"");
    CHECK_STR_CONTAINS(json, "\"messages\":[]");
    CHECK_STR_CONTAINS(json, "\"last_offset\":0");
    cbx_string_free(json);

    /* NULL group: every group with history, keyed by name. */
    REQUIRE_OK(cbx_group_send(hub, "second", CBX_TEXT, BYTES("s"),
                              CBX_SAVE_HISTORY, NULL));
    json = history(hub, NULL, 0, 0);
    CHECK_STR_CONTAINS(json, "\"room\":{");
    CHECK_STR_CONTAINS(json, "\"second\":{");
    CHECK(strstr(json, "\"never\"") == NULL);
    CHECK(count_of(json, "\"epoch\":") == 2);
    CHECK(count_of(json, "\"offset\":") == 4);
    cbx_string_free(json);
    cbx_hub_free(hub);
}

static void history_replace_keeps_offset_and_delivers_nothing(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, a, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_JSON, BYTES("{\"text\":\"helo\"}"),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_JSON, BYTES("{\"text\":\"two\"}"),
                              CBX_SAVE_HISTORY, NULL));
    CHECK(drain(hub, a) == 2);
    char *before = history(hub, "g", 0, 0);
    CHECK_RC(cbx_history_replace(hub, "g", 1, CBX_JSON,
                                 BYTES("{\"text\":\"hello\",\"edited\":true}")),
             CBX_OK);
    CHECK(drain(hub, a) == 0);
    char *after = history(hub, "g", 0, 0);
    CHECK_STR_CONTAINS(after, "\"edited\":true");
    CHECK(strstr(after, "helo") == NULL);
    CHECK_STR_CONTAINS(after, "\"text\":\"two\"");
    CHECK(count_of(after, "\"offset\":") == 2);
    CHECK_STR_CONTAINS(after, "\"last_offset\":2");
    /* Same timestamp as before the edit. */
    const char *ts_before = strstr(before, "\"ts_ms\":");
    const char *ts_after = strstr(after, "\"ts_ms\":");
    REQUIRE(ts_before != NULL && ts_after != NULL);
    CHECK(strtoull(ts_before + 8, NULL, 10) == strtoull(ts_after + 8, NULL, 10));
    cbx_string_free(before);
    cbx_string_free(after);
    /* A tombstone may change the kind. */
    CHECK_RC(cbx_history_replace(hub, "g", 2, CBX_TEXT, BYTES("[deleted]")),
             CBX_OK);
    after = history(hub, "g", 1, 0);
    CHECK_STR_CONTAINS(after, "\"kind\":\"text\"");
    CHECK_STR_CONTAINS(after, "\"payload\":\"[deleted]\"");
    cbx_string_free(after);
    cbx_hub_free(hub);
}

static void history_flush_starts_a_new_epoch(void) {
    cbx_hub *hub = new_hub(NULL);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("a"), CBX_SAVE_HISTORY,
                              NULL));
    REQUIRE_OK(cbx_group_send(hub, "h", CBX_TEXT, BYTES("b"), CBX_SAVE_HISTORY,
                              NULL));
    char e1[32], e2[32], e3[32], h1[32], h2[32];
    char *json = history(hub, "g", 0, 0);
    epoch_of(json, e1, sizeof e1);
    cbx_string_free(json);
    json = history(hub, "h", 0, 0);
    epoch_of(json, h1, sizeof h1);
    cbx_string_free(json);

    CHECK_RC(cbx_history_flush(hub, "g"), CBX_OK);
    json = history(hub, "g", 0, 0);
    epoch_of(json, e2, sizeof e2);
    CHECK(strcmp(e1, e2) != 0);
    CHECK_STR_CONTAINS(json, "\"messages\":[]");
    cbx_string_free(json);
    /* The other group is untouched. */
    json = history(hub, "h", 0, 0);
    CHECK(count_of(json, "\"offset\":") == 1);
    cbx_string_free(json);
    /* Offsets keep counting up across the flush. */
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("c"), CBX_SAVE_HISTORY,
                              &r));
    CHECK(r.offset == 2);
    json = history(hub, "g", 0, 0);
    CHECK_STR_CONTAINS(json, "\"first_offset\":2");
    cbx_string_free(json);

    /* NULL flushes every group. */
    CHECK_RC(cbx_history_flush(hub, NULL), CBX_OK);
    json = history(hub, "g", 0, 0);
    epoch_of(json, e3, sizeof e3);
    CHECK(strcmp(e3, e2) != 0 && strcmp(e3, e1) != 0);
    cbx_string_free(json);
    json = history(hub, "h", 0, 0);
    epoch_of(json, h2, sizeof h2);
    CHECK(strcmp(h1, h2) != 0);
    CHECK_STR_CONTAINS(json, "\"messages\":[]");
    cbx_string_free(json);
    json = history(hub, NULL, 0, 0);
    CHECK(strcmp(json, "{}") == 0);
    cbx_string_free(json);
    cbx_hub_free(hub);
}

static void history_bounds_evict_the_oldest_and_show_the_gap(void) {
    cbx_hub *hub = new_hub("{\"history_max_messages\": 3}");
    for (int i = 1; i <= 5; i++) {
        cbx_send_report r;
        REQUIRE_OK(cbx_group_send(hub, "g", CBX_JSON, BYTES("{}"),
                                  CBX_SAVE_HISTORY, &r));
        CHECK(r.offset == (uint64_t)i);
    }
    char *json = history(hub, "g", 0, 0);
    CHECK_STR_CONTAINS(json, "\"first_offset\":3");
    CHECK_STR_CONTAINS(json, "\"last_offset\":5");
    CHECK(count_of(json, "\"offset\":") == 3);
    CHECK(strstr(json, "\"offset\":2,") == NULL);
    cbx_string_free(json);
    /* A client that saw offset 1 asks for more: since + 1 < first_offset
     * tells it offset 2 is gone. */
    json = history(hub, "g", 1, 0);
    CHECK_STR_CONTAINS(json, "\"first_offset\":3");
    CHECK(count_of(json, "\"offset\":") == 3);
    cbx_string_free(json);
    /* An evicted entry can no longer be replaced; a kept one can. */
    CHECK_RC(cbx_history_replace(hub, "g", 2, CBX_JSON, BYTES("1")),
             CBX_NO_SUCH_MESSAGE);
    CHECK_RC(cbx_history_replace(hub, "g", 3, CBX_JSON, BYTES("1")), CBX_OK);
    cbx_hub_free(hub);

    /* A byte bound keeps the newest message even when it alone is over. */
    hub = new_hub("{\"history_max_bytes\": 10}");
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("12345678"),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("abcdefghijklmnop"),
                              CBX_SAVE_HISTORY, NULL));
    json = history(hub, "g", 0, 0);
    CHECK(count_of(json, "\"offset\":") == 1);
    CHECK_STR_CONTAINS(json, "abcdefghijklmnop");
    CHECK_STR_CONTAINS(json, "\"first_offset\":2");
    cbx_string_free(json);
    cbx_hub_free(hub);
}

/* Multi-byte UTF-8 names, characters JSON must escape, NUL bytes inside
 * payloads: all round-trip, and the JSON strings stay valid. */
static void special_characters_round_trip(void) {
    cbx_hub *hub = new_hub("{\"max_group_name_bytes\": 12}");
    const char *group = "salon-\xc3\xa9\xf0\x9f\x98\x80"; /* "salon-é😀": 12 bytes */
    uint64_t c = open_conn(hub, "a\"b\\c");
    CHECK_RC(cbx_group_add(hub, c, group), CBX_OK);
    CHECK_RC(cbx_group_add(hub, c, "salon-\xc3\xa9\xf0\x9f\x98\x80!"),
             CBX_TOO_LARGE); /* the limit counts bytes */
    const uint8_t text[] = {'a', 0, 'b'};
    cbx_send_report r;
    CHECK_RC(cbx_group_send(hub, group, CBX_TEXT, text, sizeof text,
                            CBX_SAVE_HISTORY, &r),
             CBX_OK);
    cbx_message *m = NULL;
    REQUIRE_OK(cbx_conn_recv(hub, c, 0, &m));
    size_t len = 0;
    const uint8_t *data = cbx_message_data(m, &len);
    CHECK(len == 3 && memcmp(data, text, 3) == 0);
    CHECK(strcmp(cbx_message_group(m), group) == 0);
    cbx_message_free(m);

    char *json = history(hub, group, 0, 0);
    CHECK_STR_CONTAINS(json, "\"payload\":\"a\\u0000b\"");
    CHECK_STR_CONTAINS(json, "\"group\":\"salon-\xc3\xa9\xf0\x9f\x98\x80\"");
    cbx_string_free(json);
    CHECK_RC(cbx_groups_json(hub, &json), CBX_OK);
    CHECK_STR_CONTAINS(json, "\"users\":[\"a\\\"b\\\\c\"]");
    cbx_string_free(json);
    CHECK_RC(cbx_user_send(hub, "a\"b\\c", CBX_TEXT, BYTES("dm"), &r), CBX_OK);
    CHECK(r.delivered == 1);
    cbx_hub_free(hub);
}

static void slow_consumer_is_disconnected_and_drains_first(void) {
    cbx_hub *hub = new_hub("{\"queue_max_messages\": 3}");
    uint64_t slow = open_conn(hub, "slow");
    uint64_t fast = open_conn(hub, "fast");
    REQUIRE_OK(cbx_group_add(hub, slow, "g"));
    REQUIRE_OK(cbx_group_add(hub, fast, "g"));
    char text[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(text, sizeof text, "m%d", i);
        cbx_send_report r;
        REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES(text),
                                  CBX_SAVE_HISTORY, &r));
        CHECK(r.offset == (uint64_t)i);
        if (i <= 3) {
            CHECK(r.delivered == 2 && r.dropped == 0 && r.disconnected == 0);
        } else if (i == 4) {
            CHECK(r.delivered == 1 && r.dropped == 1 && r.disconnected == 1);
        } else {
            /* The slow one left the group: it is no longer counted. */
            CHECK(r.delivered == 1 && r.dropped == 0 && r.disconnected == 0);
        }
        cbx_message *m = recv_expect(hub, fast, CBX_TEXT, text);
        cbx_message_free(m);
    }
    /* Closed, but what was queued is still received, then CBX_CLOSED. */
    char *reason = NULL;
    cbx_close_code why = CBX_CLOSE_NONE;
    uint32_t host_code = 99;
    REQUIRE_OK(cbx_conn_close_reason(hub, slow, &why, &host_code, &reason));
    CHECK(why == CBX_CLOSE_SLOW_CONSUMER);
    CHECK(host_code == 0);
    CHECK_STR_CONTAINS(reason, "slow consumer");
    cbx_string_free(reason);
    for (int i = 1; i <= 3; i++) {
        snprintf(text, sizeof text, "m%d", i);
        cbx_message *m = recv_expect(hub, slow, CBX_TEXT, text);
        CHECK(m != NULL && cbx_message_offset(m) == (uint64_t)i);
        cbx_message_free(m);
    }
    cbx_message *m = (cbx_message *)0x1;
    CHECK_RC(cbx_conn_recv(hub, slow, 0, &m), CBX_CLOSED);
    CHECK_STR_CONTAINS(cbx_last_error(), "slow consumer");
    CHECK_RC(cbx_conn_recv(hub, slow, 100, &m), CBX_CLOSED);
    CHECK(m == (cbx_message *)0x1);
    cbx_message *batch[4];
    size_t n = 99;
    CHECK_RC(cbx_conn_recv_batch(hub, slow, batch, 4, &n), CBX_CLOSED);
    CHECK(n == 99);
    /* History has everything, for the client to catch up from. */
    char *json = history(hub, "g", 3, 0);
    CHECK(count_of(json, "\"offset\":") == 2);
    cbx_string_free(json);
    /* Presence and stats agree. */
    char *groups = NULL;
    REQUIRE_OK(cbx_groups_json(hub, &groups));
    CHECK(strstr(groups, "\"slow\"") == NULL);
    CHECK_STR_CONTAINS(groups, "\"fast\"");
    cbx_string_free(groups);
    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    CHECK_STR_CONTAINS(stats, "\"slow_consumer_disconnects\":1");
    cbx_string_free(stats);
    /* The id stays valid until the host closes it, then never again. */
    CHECK_RC(cbx_conn_close(hub, slow), CBX_OK);
    CHECK_RC(cbx_conn_recv(hub, slow, 0, &m), CBX_NO_SUCH_CONNECTION);
    cbx_hub_free(hub);
}

static void queue_byte_bound_disconnects_too(void) {
    cbx_hub *hub = new_hub("{\"queue_max_bytes\": 10}");
    uint64_t c = open_conn(hub, NULL);
    cbx_send_report r;
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_BINARY, BYTES("123456")));
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_BINARY, BYTES("123456"), 0, &r));
    CHECK(r.disconnected == 1 && r.delivered == 0);
    cbx_message_free(recv_expect(hub, c, CBX_BINARY, "123456"));
    cbx_message *m = NULL;
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_CLOSED);
    cbx_hub_free(hub);
}

static void drop_policies_keep_the_connection_open(void) {
    cbx_hub *hub = new_hub("{\"queue_max_messages\": 2, "
                           "\"slow_consumer\": \"drop_oldest\"}");
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("1"), 0, &r));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("2"), 0, &r));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("3"), 0, &r));
    CHECK(r.delivered == 1 && r.dropped == 1 && r.disconnected == 0);
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "2"));
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "3"));
    cbx_hub_free(hub);

    hub = new_hub("{\"queue_max_messages\": 2, "
                  "\"slow_consumer\": \"drop_newest\"}");
    c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("1"), 0, &r));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("2"), 0, &r));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("3"), 0, &r));
    CHECK(r.delivered == 0 && r.dropped == 1 && r.disconnected == 0);
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "1"));
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "2"));
    CHECK(drain(hub, c) == 0);
    /* Still open: no reason. */
    char *reason = NULL;
    cbx_close_code why = 99;
    uint32_t host_code = 99;
    REQUIRE_OK(cbx_conn_close_reason(hub, c, &why, &host_code, &reason));
    CHECK(why == CBX_CLOSE_NONE && host_code == 0);
    CHECK(strcmp(reason, "") == 0);
    cbx_string_free(reason);
    cbx_hub_free(hub);
}

static void user_send_reaches_every_connection_of_the_user(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a1 = open_conn(hub, "alice");
    uint64_t a2 = open_conn(hub, "alice");
    uint64_t b = open_conn(hub, "bob");
    uint64_t anon = open_conn(hub, NULL);
    cbx_send_report r = {9, 9, 9, 9};
    CHECK_RC(cbx_user_send(hub, "alice", CBX_JSON, BYTES("{\"dm\":1}"), &r),
             CBX_OK);
    CHECK(r.delivered == 2 && r.dropped == 0 && r.offset == 0);
    uint64_t alices[2] = {a1, a2};
    for (int i = 0; i < 2; i++) {
        cbx_message *m = recv_expect(hub, alices[i], CBX_JSON, "{\"dm\":1}");
        CHECK(m != NULL && cbx_message_offset(m) == 0);
        CHECK(m != NULL && strcmp(cbx_message_group(m), "") == 0);
        cbx_message_free(m);
    }
    CHECK(drain(hub, b) == 0);
    CHECK(drain(hub, anon) == 0);
    /* A closed connection no longer counts for its user. */
    REQUIRE_OK(cbx_conn_close(hub, a1));
    REQUIRE_OK(cbx_user_send(hub, "alice", CBX_TEXT, BYTES("again"), &r));
    CHECK(r.delivered == 1);
    cbx_message_free(recv_expect(hub, a2, CBX_TEXT, "again"));
    cbx_hub_free(hub);
}

static void groups_json_lists_a_user_once(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a1 = open_conn(hub, "alice");
    uint64_t a2 = open_conn(hub, "alice");
    uint64_t b = open_conn(hub, "bob");
    uint64_t anon = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, a1, "chat_1"));
    REQUIRE_OK(cbx_group_add(hub, a2, "chat_1"));
    REQUIRE_OK(cbx_group_add(hub, b, "chat_1"));
    REQUIRE_OK(cbx_group_add(hub, anon, "chat_1"));
    REQUIRE_OK(cbx_group_add(hub, b, "chat_2"));
    char *json = NULL;
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK_STR_CONTAINS(json, "\"chat_1\":{");
    CHECK_STR_CONTAINS(json, "\"chat_2\":{");
    CHECK(count_of(json, "\"alice\"") == 1);
    CHECK(count_of(json, "\"bob\"") == 2);
    char expected[128];
    snprintf(expected, sizeof expected, "\"connections\":[%llu,%llu,%llu,%llu]",
             (unsigned long long)a1, (unsigned long long)a2,
             (unsigned long long)b, (unsigned long long)anon);
    CHECK_STR_CONTAINS(json, expected);
    CHECK_STR_CONTAINS(json, "\"users\":[\"alice\",\"bob\"]");
    cbx_string_free(json);
    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    CHECK_STR_CONTAINS(stats, "\"connections\":4");
    CHECK_STR_CONTAINS(stats, "\"users\":2");
    CHECK_STR_CONTAINS(stats, "\"groups\":2");
    cbx_string_free(stats);
    /* Alice stays present while one of her connections is in. */
    REQUIRE_OK(cbx_group_remove(hub, a1, "chat_1"));
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK(count_of(json, "\"alice\"") == 1);
    cbx_string_free(json);
    REQUIRE_OK(cbx_conn_close(hub, a2));
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK(count_of(json, "\"alice\"") == 0);
    cbx_string_free(json);
    /* groups_flush empties every group; connections and history stay. */
    REQUIRE_OK(cbx_group_send(hub, "chat_2", CBX_TEXT, BYTES("kept"),
                              CBX_SAVE_HISTORY, NULL));
    CHECK_RC(cbx_groups_flush(hub), CBX_OK);
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK(strcmp(json, "{}") == 0);
    cbx_string_free(json);
    json = history(hub, "chat_2", 0, 0);
    CHECK(count_of(json, "\"offset\":") == 1);
    cbx_string_free(json);
    cbx_message_free(recv_expect(hub, b, CBX_TEXT, "kept"));
    CHECK_RC(cbx_conn_send(hub, b, CBX_TEXT, BYTES("still open")), CBX_OK);
    cbx_hub_free(hub);
}

static int readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int n = poll(&p, 1, 0);
    REQUIRE(n >= 0);
    return n == 1 && (p.revents & POLLIN);
}

static void ready_fd_signals_with_poll(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, NULL);
    uint64_t b = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, a, "g"));
    int fd = cbx_hub_ready_fd(hub);
    REQUIRE(fd >= 0);
    CHECK(!readable(fd));
    uint64_t ids[8];
    size_t n = 99;
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 0);

    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("1"), 0, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("2"), 0, NULL));
    CHECK(readable(fd));
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    CHECK(poll(&p, 1, 1000) == 1);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 1 && ids[0] == a); /* listed once for two messages */
    CHECK(drain(hub, a) == 2);
    CHECK(!readable(fd));
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 0);

    /* Two connections ready; take them one at a time. */
    REQUIRE_OK(cbx_conn_send(hub, a, CBX_TEXT, BYTES("x")));
    REQUIRE_OK(cbx_conn_send(hub, b, CBX_TEXT, BYTES("y")));
    CHECK(readable(fd));
    CHECK_RC(cbx_hub_take_ready(hub, ids, 1, &n), CBX_OK);
    CHECK(n == 1);
    CHECK(readable(fd)); /* one left */
    uint64_t first = ids[0];
    CHECK_RC(cbx_hub_take_ready(hub, ids, 1, &n), CBX_OK);
    CHECK(n == 1 && ids[0] != first);
    CHECK((first == a && ids[0] == b) || (first == b && ids[0] == a));
    CHECK(drain(hub, a) == 1 && drain(hub, b) == 1);
    CHECK(!readable(fd));

    /* A connection the hub closes becomes ready too. */
    REQUIRE_OK(cbx_close_all(hub));
    CHECK(readable(fd));
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 2);
    cbx_message *m = NULL;
    CHECK_RC(cbx_conn_recv(hub, a, 0, &m), CBX_CLOSED);
    CHECK(!readable(fd));
    cbx_hub_free(hub);
}

/* The fd is created on the first cbx_hub_ready_fd call. Connections that
 * already hold messages (or were closed by the hub) at that moment are
 * listed and the fd is readable, as epoll reports an fd that is ready when
 * it is added; idle connections and released ids are not listed. */
static void ready_fd_lists_connections_ready_before_it_was_created(void) {
    cbx_hub *hub = new_hub("{\"queue_max_messages\": 2}");
    uint64_t queued = open_conn(hub, NULL);
    uint64_t idle = open_conn(hub, NULL);
    uint64_t closed = open_conn(hub, NULL);
    uint64_t released = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, queued, "early"));
    REQUIRE_OK(cbx_group_add(hub, idle, "quiet"));
    REQUIRE_OK(cbx_group_send(hub, "early", CBX_TEXT, BYTES("1"), 0, NULL));
    REQUIRE_OK(cbx_group_send(hub, "early", CBX_TEXT, BYTES("2"), 0, NULL));
    /* Released by the host with a message queued: its id is gone. */
    REQUIRE_OK(cbx_conn_send(hub, released, CBX_TEXT, BYTES("gone")));
    REQUIRE_OK(cbx_conn_close(hub, released));
    /* Closed by the hub as a slow consumer, its queue then drained: only
     * the close is left to report. */
    REQUIRE_OK(cbx_conn_send(hub, closed, CBX_TEXT, BYTES("a")));
    REQUIRE_OK(cbx_conn_send(hub, closed, CBX_TEXT, BYTES("b")));
    CHECK_RC(cbx_conn_send(hub, closed, CBX_TEXT, BYTES("c")), CBX_CLOSED);
    CHECK(drain(hub, closed) == 2);

    int fd = cbx_hub_ready_fd(hub);
    REQUIRE(fd >= 0);
    CHECK(readable(fd));
    uint64_t ids[8];
    size_t n = 0;
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 2);
    CHECK((n == 2) && ((ids[0] == queued && ids[1] == closed) ||
                       (ids[0] == closed && ids[1] == queued)));
    CHECK(!readable(fd));
    CHECK(drain(hub, queued) == 2);
    cbx_message *m = NULL;
    CHECK_RC(cbx_conn_recv(hub, closed, 0, &m), CBX_CLOSED);

    /* A second call lists nothing anew: the fd is created once. */
    CHECK(cbx_hub_ready_fd(hub) == fd);
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 0);
    /* And from here on the usual edge applies, to the idle one too. */
    REQUIRE_OK(cbx_group_send(hub, "quiet", CBX_TEXT, BYTES("3"), 0, NULL));
    CHECK(readable(fd));
    CHECK_RC(cbx_hub_take_ready(hub, ids, 8, &n), CBX_OK);
    CHECK(n == 1 && ids[0] == idle);
    cbx_hub_free(hub);
}

/* Checks that entry `i` of a cbx_hub_recv_ready batch is `text` queued
 * for `conn`. */
static void check_entry(const uint64_t *conns, cbx_message *const *messages,
                        size_t i, uint64_t conn, const char *text) {
    CHECK(conns[i] == conn);
    REQUIRE(messages[i] != NULL);
    size_t len = 0;
    const uint8_t *data = cbx_message_data(messages[i], &len);
    CHECK(len == strlen(text) && memcmp(data, text, len) == 0);
}

/* One call drains every ready connection, in the order they became ready,
 * each one's messages oldest first; cap leaves the rest first in line;
 * a connection the hub closed ends with a NULL message, once; ids the
 * host released are never listed. */
static void recv_ready_drains_every_ready_connection_in_one_call(void) {
    cbx_hub *hub = new_hub("{\"queue_max_messages\": 2}");
    uint64_t a = open_conn(hub, NULL);
    uint64_t b = open_conn(hub, NULL);
    uint64_t slow = open_conn(hub, NULL);
    uint64_t released = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, a, "g"));
    REQUIRE_OK(cbx_group_add(hub, b, "g"));
    int fd = cbx_hub_ready_fd(hub);
    REQUIRE(fd >= 0);
    uint64_t conns[8];
    cbx_message *messages[8];
    size_t n = 77;
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_EMPTY);
    CHECK(n == 77);

    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("1"), 0, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("2"), 0, NULL));
    REQUIRE_OK(cbx_conn_send(hub, slow, CBX_TEXT, BYTES("x")));
    REQUIRE_OK(cbx_conn_send(hub, released, CBX_TEXT, BYTES("gone")));
    REQUIRE_OK(cbx_conn_close(hub, released));
    CHECK(readable(fd));
    /* Room for three: a's two and b's first; b stays first in line. */
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 3, &n), CBX_OK);
    REQUIRE(n == 3);
    check_entry(conns, messages, 0, a, "1");
    check_entry(conns, messages, 1, a, "2");
    check_entry(conns, messages, 2, b, "1");
    CHECK(strcmp(cbx_message_group(messages[0]), "g") == 0);
    cbx_messages_free(messages, n);
    CHECK(messages[0] == NULL && messages[2] == NULL);
    CHECK(readable(fd));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_OK);
    REQUIRE(n == 2);
    check_entry(conns, messages, 0, b, "2");
    check_entry(conns, messages, 1, slow, "x");
    CHECK(strcmp(cbx_message_group(messages[1]), "") == 0);
    cbx_messages_free(messages, n);
    CHECK(!readable(fd));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_EMPTY);

    /* Drained: the next message lists a connection again. */
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("3"), 0, NULL));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_OK);
    REQUIRE(n == 2);
    check_entry(conns, messages, 0, a, "3");
    check_entry(conns, messages, 1, b, "3");
    cbx_messages_free(messages, n);

    /* A slow consumer: its messages, then NULL, said once, even when the
     * close has to wait for the next call. */
    REQUIRE_OK(cbx_conn_send(hub, slow, CBX_TEXT, BYTES("y")));
    REQUIRE_OK(cbx_conn_send(hub, slow, CBX_TEXT, BYTES("z")));
    CHECK_RC(cbx_conn_send(hub, slow, CBX_TEXT, BYTES("lost")), CBX_CLOSED);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 2, &n), CBX_OK);
    REQUIRE(n == 2);
    check_entry(conns, messages, 0, slow, "y");
    check_entry(conns, messages, 1, slow, "z");
    cbx_messages_free(messages, n);
    CHECK(readable(fd));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_OK);
    CHECK(n == 1 && conns[0] == slow && messages[0] == NULL);
    cbx_close_code code = CBX_CLOSE_NONE;
    uint32_t host_code = 1;
    char *text = NULL;
    REQUIRE_OK(cbx_conn_close_reason(hub, slow, &code, &host_code, &text));
    CHECK(code == CBX_CLOSE_SLOW_CONSUMER);
    cbx_string_free(text);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_EMPTY);
    CHECK(!readable(fd));

    /* Closed by the hub, then released by the host before the drain: only
     * the one still held is said to be closed. */
    REQUIRE_OK(cbx_close_all(hub));
    REQUIRE_OK(cbx_conn_close(hub, a));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_OK);
    CHECK(n == 1 && conns[0] == b && messages[0] == NULL);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_EMPTY);
    cbx_hub_free(hub);
}

/* A send to a large group lists every member whose queue was empty, in
 * the group's order, each once, and writes the ready fd once (its eventfd
 * counter reads 1); a second send before the drain lists nobody again and
 * does not write the fd; after the drain the next send lists them all. */
static void a_fan_out_lists_its_members_once_and_signals_once(void) {
    enum { MEMBERS = 300 };
    cbx_hub *hub = new_hub(NULL);
    static uint64_t ids[MEMBERS];
    for (int i = 0; i < MEMBERS; i++) {
        ids[i] = open_conn(hub, NULL);
        REQUIRE_OK(cbx_group_add(hub, ids[i], "big"));
    }
    int fd = cbx_hub_ready_fd(hub);
    REQUIRE(fd >= 0);
    static uint64_t conns[2 * MEMBERS + 1];
    static cbx_message *messages[2 * MEMBERS + 1];
    size_t n = 0;
    for (int round = 0; round < 2; round++) {
        REQUIRE_OK(cbx_group_send(hub, "big", CBX_TEXT, BYTES("a"), 0, NULL));
        uint64_t count = 0;
        REQUIRE(read(fd, &count, sizeof count) == (ssize_t)sizeof count);
        CHECK(count == 1);
        REQUIRE_OK(cbx_group_send(hub, "big", CBX_TEXT, BYTES("b"), 0, NULL));
        CHECK(!readable(fd));
        CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 2 * MEMBERS + 1, &n), CBX_OK);
        REQUIRE(n == 2 * MEMBERS);
        for (size_t i = 0; i < MEMBERS; i++) {
            check_entry(conns, messages, 2 * i, ids[i], "a");
            check_entry(conns, messages, 2 * i + 1, ids[i], "b");
        }
        cbx_messages_free(messages, n);
        CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 2 * MEMBERS + 1, &n), CBX_EMPTY);
        CHECK(!readable(fd));
    }
    cbx_hub_free(hub);
}

/* Connections the host releases while they sit on the ready list: the
 * list holds no reference of its own, so the hub keeps a released one
 * alive until it comes off (valgrind and ASan runs of this test check
 * that). cbx_hub_recv_ready skips them; cbx_hub_take_ready may still name
 * them, as documented, and receiving from them says so. */
static void connections_released_while_listed_are_skipped(void) {
    enum { N = 50 };
    cbx_hub *hub = new_hub(NULL);
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = open_conn(hub, NULL);
        REQUIRE_OK(cbx_group_add(hub, ids[i], "g"));
    }
    REQUIRE(cbx_hub_ready_fd(hub) >= 0);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("m"), 0, NULL));
    for (int i = 0; i < N; i += 2)
        REQUIRE_OK(cbx_conn_close(hub, ids[i]));
    uint64_t conns[N + 1];
    cbx_message *messages[N + 1];
    size_t n = 0;
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, N + 1, &n), CBX_OK);
    REQUIRE(n == N / 2);
    for (size_t i = 0; i < N / 2; i++) /* the group's order, joins so far */
        check_entry(conns, messages, i, ids[2 * i + 1], "m");
    cbx_messages_free(messages, n);
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, N + 1, &n), CBX_EMPTY);

    /* Listed, then released, then taken: the ids come back, the
     * connections are gone. */
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("m"), 0, NULL));
    for (int i = 1; i < N; i += 2)
        REQUIRE_OK(cbx_conn_close(hub, ids[i]));
    uint64_t taken[N];
    REQUIRE_OK(cbx_hub_take_ready(hub, taken, N, &n));
    REQUIRE(n == N / 2);
    for (size_t i = 0; i < N / 2; i++) {
        /* One of the released ones (the group's order changed when the
         * first half left it), each once. */
        int found = 0;
        for (int k = 1; k < N; k += 2)
            found += taken[i] == ids[k];
        for (size_t j = 0; j < i; j++)
            found += taken[i] == taken[j] ? 100 : 0;
        CHECK(found == 1);
        cbx_message *m = NULL;
        CHECK_RC(cbx_conn_recv(hub, taken[i], 0, &m), CBX_NO_SUCH_CONNECTION);
    }
    REQUIRE_OK(cbx_hub_take_ready(hub, taken, N, &n));
    CHECK(n == 0);

    /* Closed by the hub (listed with nothing queued), released, then
     * the hub freed with it still listed. */
    uint64_t last = open_conn(hub, NULL);
    REQUIRE_OK(cbx_close_all(hub));
    REQUIRE_OK(cbx_conn_close(hub, last));
    cbx_hub_free(hub);
}

/* Without cbx_hub_ready_fd, the first cbx_hub_recv_ready turns readiness
 * on and finds the connections that already hold messages. */
static void recv_ready_finds_messages_queued_before_its_first_call(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("early")));
    uint64_t conns[4];
    cbx_message *messages[4];
    size_t n = 0;
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, &n), CBX_OK);
    REQUIRE(n == 1);
    check_entry(conns, messages, 0, c, "early");
    cbx_messages_free(messages, n);
    /* And from then on sends list it. */
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("late")));
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 4, &n), CBX_OK);
    REQUIRE(n == 1);
    check_entry(conns, messages, 0, c, "late");
    cbx_messages_free(messages, n);
    cbx_hub_free(hub);
}

/* cbx_messages_free gives a broadcast's references back together: the
 * message lives while any other reference does. */
static void messages_free_of_one_broadcast_keeps_other_references(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = open_conn(hub, NULL);
        REQUIRE_OK(cbx_group_add(hub, c[i], "g"));
    }
    REQUIRE(cbx_hub_ready_fd(hub) >= 0);
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("same"), 0, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("next"), 0, NULL));
    cbx_message *kept = NULL;
    REQUIRE_OK(cbx_conn_recv(hub, c[0], 0, &kept));
    uint64_t conns[8];
    cbx_message *messages[8];
    size_t n = 0;
    CHECK_RC(cbx_hub_recv_ready(hub, conns, messages, 8, &n), CBX_OK);
    REQUIRE(n == 5);
    /* c[0]'s "next", then "same" and "next" of c[1] and of c[2]. */
    REQUIRE(messages[1] == messages[3]);
    REQUIRE(messages[0] == messages[2] && messages[2] == messages[4]);
    REQUIRE(messages[0] != messages[1]);
    /* Runs of one message, a NULL inside one. */
    cbx_message *with_null[6] = {messages[1], NULL,        messages[3],
                                 messages[0], messages[2], messages[4]};
    cbx_messages_free(with_null, 6);
    for (int i = 0; i < 6; i++) CHECK(with_null[i] == NULL);
    size_t len = 0;
    const uint8_t *data = cbx_message_data(kept, &len);
    CHECK(len == 4 && memcmp(data, "same", 4) == 0);
    cbx_hub_free(hub);
    cbx_message_free(kept);
}

static void recv_times_out_with_empty(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    cbx_message *m = NULL;
    uint64_t t0 = monotonic_ms();
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_EMPTY);
    CHECK_RC(cbx_conn_recv(hub, c, 100, &m), CBX_EMPTY);
    uint64_t waited = monotonic_ms() - t0;
    CHECK(waited >= 90);
    CHECK(m == NULL);
    /* A pending message is returned at once, even with a long timeout. */
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("now")));
    t0 = monotonic_ms();
    CHECK_RC(cbx_conn_recv(hub, c, 60000, &m), CBX_OK);
    CHECK(monotonic_ms() - t0 < 5000);
    cbx_message_free(m);
    /* Negative: forever, but a pending message still comes at once. */
    REQUIRE_OK(cbx_conn_send(hub, c, CBX_TEXT, BYTES("now")));
    CHECK_RC(cbx_conn_recv(hub, c, -1, &m), CBX_OK);
    cbx_message_free(m);
    cbx_hub_free(hub);
}

static void recv_batch_and_views_read_many_messages(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    char text[8];
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "b%d", i);
        REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES(text),
                                  CBX_SAVE_HISTORY, NULL));
    }
    cbx_message *batch[8] = {NULL};
    size_t n = 0;
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 3, &n), CBX_OK);
    CHECK(n == 3);
    cbx_message_view views[8];
    CHECK_RC(cbx_message_views((const cbx_message *const *)batch, n, views),
             CBX_OK);
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof text, "b%d", (int)i);
        CHECK(views[i].kind == CBX_TEXT);
        CHECK(views[i].len == strlen(text));
        CHECK(memcmp(views[i].data, text, views[i].len) == 0);
        CHECK(strcmp(views[i].group, "g") == 0);
        CHECK(views[i].offset == i + 1);
        CHECK(views[i].ts_ms == cbx_message_ts_ms(batch[i]));
        CHECK(views[i].group == cbx_message_group(batch[i]));
    }
    cbx_messages_free(batch, n);
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 8, &n), CBX_OK);
    CHECK(n == 2);
    CHECK(cbx_message_offset(batch[0]) == 4 && cbx_message_offset(batch[1]) == 5);
    /* Freed one by one works as well. */
    cbx_message_free(batch[0]);
    cbx_message_free(batch[1]);
    n = 42;
    CHECK_RC(cbx_conn_recv_batch(hub, c, batch, 8, &n), CBX_EMPTY);
    CHECK(n == 42);
    cbx_hub_free(hub);
}

static void messages_outlive_the_hub(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, NULL);
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("survivor"),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("dropped"), 0, NULL));
    cbx_message *m = NULL;
    REQUIRE_OK(cbx_conn_recv(hub, c, 0, &m));
    const char *group = cbx_message_group(m);
    cbx_hub_free(hub); /* also drops the unreceived second message */
    size_t len = 0;
    const uint8_t *data = cbx_message_data(m, &len);
    CHECK(len == 8 && memcmp(data, "survivor", 8) == 0);
    CHECK(strcmp(group, "g") == 0);
    CHECK(strcmp(cbx_message_group(m), "g") == 0);
    CHECK(cbx_message_offset(m) == 1);
    cbx_message_free(m);
}

static void close_all_lets_receivers_drain_then_closes(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t c = open_conn(hub, "u");
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("last words"), 0, NULL));
    CHECK_RC(cbx_close_all(hub), CBX_OK);
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "last words"));
    cbx_message *m = NULL;
    CHECK_RC(cbx_conn_recv(hub, c, 0, &m), CBX_CLOSED);
    char *reason = NULL;
    cbx_close_code why = CBX_CLOSE_NONE;
    uint32_t host_code = 99;
    REQUIRE_OK(cbx_conn_close_reason(hub, c, &why, &host_code, &reason));
    CHECK(why == CBX_CLOSE_HUB_CLOSED && host_code == 0);
    CHECK(strcmp(reason, "hub closed all connections") == 0);
    cbx_string_free(reason);
    char *json = NULL;
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK(strcmp(json, "{}") == 0);
    cbx_string_free(json);
    CHECK_RC(cbx_conn_close(hub, c), CBX_OK);
    CHECK_RC(cbx_conn_close(hub, c), CBX_NO_SUCH_CONNECTION);
    /* The hub still takes new connections. */
    uint64_t d = open_conn(hub, NULL);
    CHECK(d > c);
    CHECK_RC(cbx_conn_send(hub, d, CBX_TEXT, BYTES("hi")), CBX_OK);
    cbx_hub_free(hub);
}

static void conn_close_leaves_groups_and_drops_pending(void) {
    cbx_hub *hub = new_hub(NULL);
    uint64_t a = open_conn(hub, "a");
    uint64_t b = open_conn(hub, "b");
    REQUIRE_OK(cbx_group_add(hub, a, "g"));
    REQUIRE_OK(cbx_group_add(hub, b, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("pending"), 0, NULL));
    CHECK_RC(cbx_conn_close(hub, a), CBX_OK);
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("after"), 0, &r));
    CHECK(r.delivered == 1);
    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    CHECK_STR_CONTAINS(stats, "\"connections\":1");
    CHECK_STR_CONTAINS(stats, "\"queued_messages\":2");
    cbx_string_free(stats);
    CHECK(drain(hub, b) == 2);
    cbx_hub_free(hub);
}

static void stats_json_has_every_documented_key(void) {
    cbx_hub *hub = new_hub(NULL);
    char *stats = NULL;
    CHECK_RC(cbx_stats_json(hub, &stats), CBX_OK);
    static const char *const keys[] = {
        "\"connections\":", "\"users\":", "\"groups\":", "\"group_sends\":",
        "\"direct_sends\":", "\"deliveries\":", "\"dropped\":",
        "\"slow_consumer_disconnects\":", "\"expired_connections\":",
        "\"history_messages\":", "\"history_bytes\":", "\"queued_messages\":",
        "\"queued_bytes\":"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        CHECK_STR_CONTAINS(stats, keys[i]);
    }
    cbx_string_free(stats);
    cbx_hub_free(hub);
}

/* Connection TTL and history age bound, in one wait. */
static void ttl_closes_the_connection_and_ages_out_history(void) {
    cbx_hub *hub = new_hub("{\"history_ttl_seconds\": 1}");
    uint64_t c = 0;
    uint64_t opened = monotonic_ms();
    REQUIRE_OK(cbx_group_send(hub, "aged", CBX_TEXT, BYTES("old"),
                              CBX_SAVE_HISTORY, NULL));
    REQUIRE_OK(cbx_conn_open(hub, "temp", 1, &c));
    uint64_t keep = open_conn(hub, "keep");
    REQUIRE_OK(cbx_group_add(hub, c, "g"));
    REQUIRE_OK(cbx_group_add(hub, keep, "g"));
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("before"), 0, NULL));
    cbx_message_free(recv_expect(hub, c, CBX_TEXT, "before"));
    CHECK(drain(hub, keep) == 1);
    cbx_result rc = CBX_OK;
    cbx_message *m = NULL;
    /* Bounded: expiry is due 1 s after the open; give it until 3 s. */
    while (monotonic_ms() - opened < 3000) {
        rc = cbx_conn_recv(hub, c, 100, &m);
        if (rc == CBX_CLOSED) {
            break;
        }
        CHECK(rc == CBX_EMPTY);
        if (rc == CBX_OK) {
            cbx_message_free(m);
        }
    }
    CHECK(rc == CBX_CLOSED);
    CHECK(monotonic_ms() - opened >= 900); /* not before its time */
    CHECK_STR_CONTAINS(cbx_last_error(), "ttl");
    char *reason = NULL;
    cbx_close_code why = CBX_CLOSE_NONE;
    uint32_t host_code = 99;
    REQUIRE_OK(cbx_conn_close_reason(hub, c, &why, &host_code, &reason));
    CHECK(why == CBX_CLOSE_EXPIRED && host_code == 0);
    CHECK_STR_CONTAINS(reason, "ttl");
    cbx_string_free(reason);
    /* It left its groups; the connection without a TTL is untouched. */
    cbx_send_report r;
    REQUIRE_OK(cbx_group_send(hub, "g", CBX_TEXT, BYTES("after"), 0, &r));
    CHECK(r.delivered == 1);
    cbx_message_free(recv_expect(hub, keep, CBX_TEXT, "after"));
    /* The expiry thread counts it just after closing it: allow it a
     * moment. */
    char *stats = NULL;
    for (int i = 0; i < 100; i++) {
        cbx_string_free(stats);
        REQUIRE_OK(cbx_stats_json(hub, &stats));
        if (strstr(stats, "\"expired_connections\":1") != NULL) {
            break;
        }
        struct timespec ms10 = {0, 10 * 1000 * 1000};
        nanosleep(&ms10, NULL);
    }
    CHECK_STR_CONTAINS(stats, "\"expired_connections\":1");
    cbx_string_free(stats);
    CHECK_RC(cbx_conn_close(hub, c), CBX_OK);
    /* The history entry saved before the open is over 1 s old by now (or
     * within a moment); its offset is not reused. */
    char *json = NULL;
    for (int i = 0; i < 100; i++) {
        cbx_string_free(json);
        json = history(hub, "aged", 0, 0);
        if (strstr(json, "\"messages\":[]") != NULL) {
            break;
        }
        struct timespec ms10 = {0, 10 * 1000 * 1000};
        nanosleep(&ms10, NULL);
    }
    CHECK_STR_CONTAINS(json, "\"messages\":[]");
    CHECK_STR_CONTAINS(json, "\"last_offset\":1");
    cbx_string_free(json);
    cbx_send_report r2;
    REQUIRE_OK(cbx_group_send(hub, "aged", CBX_TEXT, BYTES("new"),
                              CBX_SAVE_HISTORY, &r2));
    CHECK(r2.offset == 2);
    cbx_hub_free(hub);
}

int main(void) {
    RUN(group_send_reaches_members_with_offsets_from_1);
    RUN(only_saved_messages_get_offsets);
    RUN(history_json_has_the_documented_shape);
    RUN(history_replace_keeps_offset_and_delivers_nothing);
    RUN(history_flush_starts_a_new_epoch);
    RUN(history_bounds_evict_the_oldest_and_show_the_gap);
    RUN(special_characters_round_trip);
    RUN(slow_consumer_is_disconnected_and_drains_first);
    RUN(queue_byte_bound_disconnects_too);
    RUN(drop_policies_keep_the_connection_open);
    RUN(user_send_reaches_every_connection_of_the_user);
    RUN(groups_json_lists_a_user_once);
    RUN(ready_fd_signals_with_poll);
    RUN(ready_fd_lists_connections_ready_before_it_was_created);
    RUN(recv_ready_drains_every_ready_connection_in_one_call);
    RUN(recv_ready_finds_messages_queued_before_its_first_call);
    RUN(a_fan_out_lists_its_members_once_and_signals_once);
    RUN(connections_released_while_listed_are_skipped);
    RUN(messages_free_of_one_broadcast_keeps_other_references);
    RUN(recv_times_out_with_empty);
    RUN(recv_batch_and_views_read_many_messages);
    RUN(messages_outlive_the_hub);
    RUN(close_all_lets_receivers_drain_then_closes);
    RUN(conn_close_leaves_groups_and_drops_pending);
    RUN(stats_json_has_every_documented_key);
    RUN(ttl_closes_the_connection_and_ages_out_history);
    return check_summary();
}
