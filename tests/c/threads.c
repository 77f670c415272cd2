/*
 * Four sender threads at once, each to its own group and all to one shared
 * group (saved to history), while receiver threads drain: one per member
 * connection with blocking and batch receives, and one driven by the ready
 * fd with poll(). With queues big enough nothing is lost: every count is
 * checked exactly, per-sender order is kept, shared offsets are 1..4N with
 * no gap or duplicate, and send reports, history and stats agree.
 */

#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

#define SENDERS 4
#define N 1000 /* messages per sender and group */
#define SHARED_TOTAL (SENDERS * N)

/* A receiver gives up after this long without a message: a lost message
 * fails the test instead of hanging it. */
#define STALL_MS 10000

static cbx_hub *hub;
static uint64_t receivers[SENDERS]; /* receiver i: "solo_i" and "shared" */
static uint64_t watcher;            /* "shared" only, read via the ready fd */

/* Written by one sender each, read after join. */
static uint64_t delivered_by[SENDERS];
static uint64_t offsets_by[SENDERS][N];

/* Guards check_failures, which threads bump. */
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

#define TCHECK(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            pthread_mutex_lock(&fail_lock);                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,           \
                    __LINE__, #cond);                                        \
            check_failures++;                                                \
            pthread_mutex_unlock(&fail_lock);                                \
        }                                                                    \
    } while (0)

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *sender(void *arg) {
    int t = (int)(intptr_t)arg;
    char solo[16];
    snprintf(solo, sizeof solo, "solo_%d", t);

    /* The last error is per thread: a fresh thread has none, and another
     * thread's failure does not show here. */
    TCHECK(strcmp(cbx_last_error(), "") == 0);
    uint64_t bogus = UINT64_C(900000000) + (uint64_t)t;
    TCHECK(cbx_conn_close(hub, bogus) == CBX_NO_SUCH_CONNECTION);

    char payload[64];
    for (int s = 0; s < N; s++) {
        cbx_send_report r = {0, 0, 0, 0};
        int len = snprintf(payload, sizeof payload, "{\"t\":%d,\"s\":%d}", t, s);
        TCHECK(cbx_group_send(hub, solo, CBX_JSON, (const uint8_t *)payload,
                              (size_t)len, 0, &r) == CBX_OK);
        TCHECK(r.delivered == 1 && r.dropped == 0 && r.offset == 0);
        delivered_by[t] += r.delivered;

        len = snprintf(payload, sizeof payload, "%d:%d", t, s);
        TCHECK(cbx_group_send(hub, "shared", CBX_TEXT, (const uint8_t *)payload,
                              (size_t)len, CBX_SAVE_HISTORY, &r) == CBX_OK);
        TCHECK(r.delivered == SENDERS + 1 && r.dropped == 0);
        TCHECK(r.disconnected == 0 && r.offset >= 1);
        delivered_by[t] += r.delivered;
        offsets_by[t][s] = r.offset;
    }

    char expected[64];
    snprintf(expected, sizeof expected, "%" PRIu64, bogus);
    TCHECK(cbx_conn_close(hub, bogus) == CBX_NO_SUCH_CONNECTION);
    TCHECK(strstr(cbx_last_error(), expected) != NULL);
    return NULL;
}

/* What one receiver saw, checked as it goes. */
struct seen {
    uint64_t conn;
    int own;                   /* the solo group it is in, -1 for none */
    int next_solo;             /* next expected s from its solo group */
    int next_shared[SENDERS];  /* next expected s from each sender */
    uint64_t last_offset;      /* shared offsets only go up */
    size_t total;
};

static void seen_one(struct seen *st, const uint8_t *data, size_t len,
                     const char *group, uint64_t offset) {
    char text[64];
    TCHECK(len < sizeof text);
    if (len >= sizeof text) {
        return;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    int t = -1, s = -1;
    if (strcmp(group, "shared") == 0) {
        TCHECK(sscanf(text, "%d:%d", &t, &s) == 2);
        TCHECK(t >= 0 && t < SENDERS);
        if (t >= 0 && t < SENDERS) {
            TCHECK(s == st->next_shared[t]);
            st->next_shared[t] = s + 1;
        }
        TCHECK(offset > st->last_offset);
        st->last_offset = offset;
    } else {
        char want[16];
        snprintf(want, sizeof want, "solo_%d", st->own);
        TCHECK(strcmp(group, want) == 0);
        TCHECK(sscanf(text, "{\"t\":%d,\"s\":%d}", &t, &s) == 2);
        TCHECK(t == st->own && s == st->next_solo);
        st->next_solo = s + 1;
        TCHECK(offset == 0);
    }
    st->total++;
}

static size_t expected_total(const struct seen *st) {
    return (size_t)SHARED_TOTAL + (st->own >= 0 ? N : 0);
}

/* Alternates blocking single receives and non-blocking batches. */
static void *receiver(void *arg) {
    struct seen *st = arg;
    uint64_t last_progress = monotonic_ms();
    int use_batch = 0;
    while (st->total < expected_total(st)) {
        if (monotonic_ms() - last_progress > STALL_MS) {
            TCHECK(!"receiver stalled");
            break;
        }
        if (use_batch) {
            cbx_message *batch[64];
            cbx_message_view views[64];
            size_t n = 0;
            cbx_result rc = cbx_conn_recv_batch(hub, st->conn, batch, 64, &n);
            if (rc == CBX_EMPTY) {
                use_batch = 0;
                continue;
            }
            TCHECK(rc == CBX_OK);
            if (rc != CBX_OK) {
                break;
            }
            TCHECK(cbx_message_views((const cbx_message *const *)batch, n,
                                     views) == CBX_OK);
            for (size_t i = 0; i < n; i++) {
                seen_one(st, views[i].data, views[i].len, views[i].group,
                         views[i].offset);
            }
            cbx_messages_free(batch, n);
        } else {
            cbx_message *m = NULL;
            cbx_result rc = cbx_conn_recv(hub, st->conn, 200, &m);
            if (rc == CBX_EMPTY) {
                continue;
            }
            TCHECK(rc == CBX_OK);
            if (rc != CBX_OK) {
                break;
            }
            size_t len = 0;
            const uint8_t *data = cbx_message_data(m, &len);
            seen_one(st, data, len, cbx_message_group(m), cbx_message_offset(m));
            cbx_message_free(m);
        }
        last_progress = monotonic_ms();
        use_batch = !use_batch;
    }
    return NULL;
}

/* Waits on the hub's ready fd; drains the watcher connection whenever it
 * is listed. Other ids it takes belong to blocking receivers: ignored. */
static void *ready_reader(void *arg) {
    struct seen *st = arg;
    int fd = cbx_hub_ready_fd(hub);
    TCHECK(fd >= 0);
    uint64_t last_progress = monotonic_ms();
    while (st->total < expected_total(st)) {
        if (monotonic_ms() - last_progress > STALL_MS) {
            TCHECK(!"ready-fd reader stalled");
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int n = poll(&p, 1, 200);
        TCHECK(n >= 0);
        if (n <= 0) {
            continue;
        }
        uint64_t ids[16];
        size_t taken = 0;
        do {
            TCHECK(cbx_hub_take_ready(hub, ids, 16, &taken) == CBX_OK);
            for (size_t i = 0; i < taken; i++) {
                if (ids[i] != st->conn) {
                    continue;
                }
                cbx_message *m = NULL;
                while (cbx_conn_recv(hub, st->conn, 0, &m) == CBX_OK) {
                    size_t len = 0;
                    const uint8_t *data = cbx_message_data(m, &len);
                    seen_one(st, data, len, cbx_message_group(m),
                             cbx_message_offset(m));
                    cbx_message_free(m);
                    last_progress = monotonic_ms();
                }
            }
        } while (taken == 16);
    }
    return NULL;
}

static void many_threads_send_and_receive_without_loss(void) {
    REQUIRE_OK(cbx_hub_new("{\"queue_max_messages\": 1000000,"
                           " \"queue_max_bytes\": 268435456,"
                           " \"history_max_bytes\": 0}",
                           &hub));
    struct seen seen[SENDERS + 1];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < SENDERS; i++) {
        char user[16], solo[16];
        snprintf(user, sizeof user, "user_%d", i);
        snprintf(solo, sizeof solo, "solo_%d", i);
        REQUIRE_OK(cbx_conn_open(hub, user, 0, &receivers[i]));
        REQUIRE_OK(cbx_group_add(hub, receivers[i], solo));
        REQUIRE_OK(cbx_group_add(hub, receivers[i], "shared"));
        seen[i].conn = receivers[i];
        seen[i].own = i;
    }
    REQUIRE_OK(cbx_conn_open(hub, "watcher", 0, &watcher));
    REQUIRE_OK(cbx_group_add(hub, watcher, "shared"));
    seen[SENDERS].conn = watcher;
    seen[SENDERS].own = -1;
    /* Listing starts with the first call for the fd: make it before any
     * send, so the watcher misses nothing. */
    REQUIRE(cbx_hub_ready_fd(hub) >= 0);

    pthread_t rx[SENDERS + 1], tx[SENDERS];
    for (int i = 0; i < SENDERS; i++) {
        REQUIRE(pthread_create(&rx[i], NULL, receiver, &seen[i]) == 0);
    }
    REQUIRE(pthread_create(&rx[SENDERS], NULL, ready_reader, &seen[SENDERS]) == 0);
    for (int i = 0; i < SENDERS; i++) {
        REQUIRE(pthread_create(&tx[i], NULL, sender, (void *)(intptr_t)i) == 0);
    }
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(tx[i], NULL);
    }
    for (int i = 0; i <= SENDERS; i++) {
        pthread_join(rx[i], NULL);
    }

    /* Every receiver got exactly its share, in order. */
    size_t received = 0;
    for (int i = 0; i <= SENDERS; i++) {
        CHECK(seen[i].total == expected_total(&seen[i]));
        CHECK(seen[i].last_offset == SHARED_TOTAL);
        for (int t = 0; t < SENDERS; t++) {
            CHECK(seen[i].next_shared[t] == N);
        }
        if (seen[i].own >= 0) {
            CHECK(seen[i].next_solo == N);
        }
        received += seen[i].total;
    }

    /* Shared offsets: 1..4N, each handed out once. */
    static unsigned char used[SHARED_TOTAL + 1];
    uint64_t delivered = 0;
    for (int t = 0; t < SENDERS; t++) {
        delivered += delivered_by[t];
        for (int s = 0; s < N; s++) {
            uint64_t o = offsets_by[t][s];
            CHECK(o >= 1 && o <= SHARED_TOTAL);
            if (o >= 1 && o <= SHARED_TOTAL) {
                CHECK(used[o] == 0);
                used[o] = 1;
            }
            if (s > 0) {
                CHECK(o > offsets_by[t][s - 1]); /* a sender's own order */
            }
        }
    }
    const size_t expected_deliveries =
        (size_t)SENDERS * N + (size_t)SHARED_TOTAL * (SENDERS + 1);
    CHECK(delivered == expected_deliveries);
    CHECK(received == expected_deliveries);

    /* History and stats tell the same story. */
    char *json = NULL;
    REQUIRE_OK(cbx_history_json(hub, "shared", 0, 0, &json));
    char want[96];
    snprintf(want, sizeof want, "\"last_offset\":%d", SHARED_TOTAL);
    CHECK_STR_CONTAINS(json, want);
    CHECK_STR_CONTAINS(json, "\"first_offset\":1,");
    size_t in_history = 0;
    for (const char *p = json; (p = strstr(p, "\"offset\":")) != NULL; p++) {
        in_history++;
    }
    CHECK(in_history == SHARED_TOTAL);
    cbx_string_free(json);

    char *stats = NULL;
    REQUIRE_OK(cbx_stats_json(hub, &stats));
    snprintf(want, sizeof want, "\"deliveries\":%zu", expected_deliveries);
    CHECK_STR_CONTAINS(stats, want);
    snprintf(want, sizeof want, "\"group_sends\":%d", 2 * SHARED_TOTAL);
    CHECK_STR_CONTAINS(stats, want);
    snprintf(want, sizeof want, "\"history_messages\":%d", SHARED_TOTAL);
    CHECK_STR_CONTAINS(stats, want);
    CHECK_STR_CONTAINS(stats, "\"dropped\":0");
    CHECK_STR_CONTAINS(stats, "\"queued_messages\":0");
    CHECK_STR_CONTAINS(stats, "\"slow_consumer_disconnects\":0");
    cbx_string_free(stats);
    cbx_hub_free(hub);
    hub = NULL;
}

/* Connections opened and closed from many threads at once still get
 * distinct ids, and every close of a stale id is refused. */
#define CHURN 500
static uint64_t churn_ids[SENDERS][CHURN];

static void *churner(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < CHURN; i++) {
        uint64_t id = 0;
        TCHECK(cbx_conn_open(hub, "churn", 0, &id) == CBX_OK);
        TCHECK(cbx_group_add(hub, id, "churn") == CBX_OK);
        TCHECK(cbx_conn_close(hub, id) == CBX_OK);
        TCHECK(cbx_conn_close(hub, id) == CBX_NO_SUCH_CONNECTION);
        churn_ids[t][i] = id;
    }
    return NULL;
}

/* Sends to the churning group until the churners are done. */
static atomic_int churn_done;

static void *churn_sender(void *arg) {
    (void)arg;
    while (!atomic_load(&churn_done)) {
        cbx_send_report r;
        TCHECK(cbx_group_send(hub, "churn", CBX_TEXT, BYTES("tick"),
                              CBX_SAVE_HISTORY, &r) == CBX_OK);
        TCHECK(r.dropped == 0 && r.disconnected == 0);
    }
    return NULL;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void concurrent_open_close_never_reuses_ids(void) {
    REQUIRE_OK(cbx_hub_new("{\"history_max_messages\": 100}", &hub));
    pthread_t th[SENDERS], tx;
    atomic_store(&churn_done, 0);
    REQUIRE(pthread_create(&tx, NULL, churn_sender, NULL) == 0);
    for (int i = 0; i < SENDERS; i++) {
        REQUIRE(pthread_create(&th[i], NULL, churner, (void *)(intptr_t)i) == 0);
    }
    for (int i = 0; i < SENDERS; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&churn_done, 1);
    pthread_join(tx, NULL);
    uint64_t *all = &churn_ids[0][0];
    qsort(all, (size_t)SENDERS * CHURN, sizeof *all, compare_u64);
    for (size_t i = 1; i < (size_t)SENDERS * CHURN; i++) {
        CHECK(all[i] != all[i - 1]);
    }
    char *json = NULL;
    REQUIRE_OK(cbx_groups_json(hub, &json));
    CHECK(strcmp(json, "{}") == 0);
    cbx_string_free(json);
    REQUIRE_OK(cbx_stats_json(hub, &json));
    CHECK_STR_CONTAINS(json, "\"connections\":0");
    CHECK_STR_CONTAINS(json, "\"users\":0");
    cbx_string_free(json);
    cbx_hub_free(hub);
    hub = NULL;
}

/* A receive blocked forever (timeout < 0) wakes for a message sent from
 * another thread, and for a close by the hub or by the host. */
struct blocked {
    uint64_t conn;
    cbx_result rc;
    size_t len;
};

static void *blocked_recv(void *arg) {
    struct blocked *b = arg;
    cbx_message *m = NULL;
    b->rc = cbx_conn_recv(hub, b->conn, -1, &m);
    if (b->rc == CBX_OK) {
        cbx_message_data(m, &b->len);
        cbx_message_free(m);
    }
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void blocked_receive_wakes_for_send_and_close(void) {
    REQUIRE_OK(cbx_hub_new(NULL, &hub));
    struct blocked b[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        b[i].rc = -1;
        b[i].len = 0;
        REQUIRE_OK(cbx_conn_open(hub, NULL, 0, &b[i].conn));
        REQUIRE(pthread_create(&th[i], NULL, blocked_recv, &b[i]) == 0);
    }
    sleep_ms(100); /* let them block */
    REQUIRE_OK(cbx_conn_send(hub, b[0].conn, CBX_TEXT, BYTES("wake")));
    pthread_join(th[0], NULL);
    CHECK(b[0].rc == CBX_OK && b[0].len == 4);

    CHECK_RC(cbx_conn_close(hub, b[1].conn), CBX_OK);
    pthread_join(th[1], NULL);
    CHECK(b[1].rc == CBX_CLOSED || b[1].rc == CBX_NO_SUCH_CONNECTION);

    CHECK_RC(cbx_close_all(hub), CBX_OK);
    pthread_join(th[2], NULL);
    CHECK(b[2].rc == CBX_CLOSED);
    cbx_hub_free(hub);
    hub = NULL;
}

int main(void) {
    RUN(many_threads_send_and_receive_without_loss);
    RUN(concurrent_open_close_never_reuses_ids);
    RUN(blocked_receive_wakes_for_send_and_close);
    return check_summary();
}
