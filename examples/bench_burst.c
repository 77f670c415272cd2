/*
 * bench_burst.c: fan-out under bursts, through the C ABI.
 *
 * One group of 1000 members, 100-byte text payloads. For each queue depth
 * (1, 10, 64, 256) it makes `depth` group sends in a row, timing only the
 * sends, then drains every member, timing the drain separately. Every
 * member holds `depth` messages at the end of the burst. Two hosts, side
 * by side in every round:
 *
 *   per connection: no ready fd; the drain walks the members, calling
 *          cbx_conn_recv_batch (256 a call) until CBX_EMPTY, and
 *          cbx_messages_free;
 *   ready list: the ready fd is on before the sends (an event loop's
 *          setup: each send lists the members whose queue was empty), and
 *          the drain calls cbx_hub_recv_ready (1024 entries a call) until
 *          CBX_EMPTY, and cbx_messages_free.
 *
 * Two cases a depth:
 *   fresh: a new hub and new connections each round, so every queue
 *          grows from empty during the burst (the worst case);
 *   reused: one hub, round after round, so queues have held `depth`
 *          messages before (a long-lived server's steady state).
 * Each figure is the median of the rounds.
 *
 * `bench_burst --idle N` opens N connections (each with a user id, in
 * rooms of 10, as bench_core's idle figure) and prints the growth of the
 * process's RSS per connection: what a connection that holds nothing costs.
 *
 * `bench_burst --callgrind PART fresh|reused DEPTH` runs one round with
 * callgrind's instrumentation on only around one part (PART: send, drain,
 * send-ready or drain-ready; run it under `valgrind --tool=callgrind
 * --instr-atstart=no`): the instruction count, divided by the deliveries,
 * is the stable number on a shared machine. scripts/bench-burst.sh builds
 * and runs everything.
 *
 * Build from the repository root, after `cargo build --release`:
 *
 *   cc -O2 -Wall -Wextra -std=c11 -Iinclude examples/bench_burst.c \
 *      -o target/release/bench_burst -Ltarget/release -lchannelbox \
 *      -Wl,-rpath,"$PWD/target/release"
 */

#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <valgrind/callgrind.h>

#include "channelbox.h"

#define MEMBERS 1000
#define PAYLOAD 100
#define BATCH 256
#define READY_BATCH 1024
#define MAX_ROUNDS 64

#define TRY(call)                                                         \
    do {                                                                  \
        cbx_result rc_ = (call);                                          \
        if (rc_ != CBX_OK) {                                              \
            fprintf(stderr, "%s: %s: %s\n", #call, cbx_result_name(rc_),  \
                    cbx_last_error());                                    \
            exit(1);                                                      \
        }                                                                 \
    } while (0)

/* What the measured part is, when run under callgrind. */
enum part { PART_NONE, PART_SEND, PART_DRAIN };

struct bench {
    cbx_hub *hub;
    /* The ready fd is on and the drain is cbx_hub_recv_ready. */
    int ready;
    uint64_t conns[MEMBERS];
    uint8_t payload[PAYLOAD];
    cbx_message *batch[BATCH];
    uint64_t ready_conns[READY_BATCH];
    cbx_message *ready_messages[READY_BATCH];
};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench_open(struct bench *b) {
    /* Queues large enough for the deepest burst: nobody is a slow
     * consumer here. */
    TRY(cbx_hub_new("{\"queue_max_messages\": 100000, "
                    "\"queue_max_bytes\": 104857600}",
                    &b->hub));
    for (int i = 0; i < MEMBERS; i++) {
        TRY(cbx_conn_open(b->hub, NULL, 0, &b->conns[i]));
        TRY(cbx_group_add(b->hub, b->conns[i], "burst"));
    }
    if (b->ready && cbx_hub_ready_fd(b->hub) < 0) {
        fprintf(stderr, "cbx_hub_ready_fd: %s\n", cbx_last_error());
        exit(1);
    }
}

static void bench_close(struct bench *b) {
    for (int i = 0; i < MEMBERS; i++) TRY(cbx_conn_close(b->hub, b->conns[i]));
    cbx_hub_free(b->hub);
    b->hub = NULL;
}

/* `depth` sends to the group; returns the nanoseconds they took. */
static double burst(struct bench *b, int depth, enum part measured) {
    cbx_send_report report;
    if (measured == PART_SEND) CALLGRIND_START_INSTRUMENTATION;
    double t0 = now_ns();
    for (int i = 0; i < depth; i++) {
        TRY(cbx_group_send(b->hub, "burst", CBX_TEXT, b->payload, PAYLOAD, 0,
                           &report));
        if (report.delivered != MEMBERS) {
            fprintf(stderr, "delivered %llu, expected %d\n",
                    (unsigned long long)report.delivered, MEMBERS);
            exit(1);
        }
    }
    double t1 = now_ns();
    if (measured == PART_SEND) CALLGRIND_STOP_INSTRUMENTATION;
    return t1 - t0;
}

/* Receives and frees everything pending, one connection at a time. */
static long drain_each_connection(struct bench *b) {
    long total = 0;
    for (int i = 0; i < MEMBERS; i++) {
        for (;;) {
            size_t n = 0;
            cbx_result rc =
                cbx_conn_recv_batch(b->hub, b->conns[i], b->batch, BATCH, &n);
            if (rc == CBX_EMPTY) break;
            if (rc != CBX_OK) {
                fprintf(stderr, "recv_batch: %s: %s\n", cbx_result_name(rc),
                        cbx_last_error());
                exit(1);
            }
            cbx_messages_free(b->batch, n);
            total += (long)n;
        }
    }
    return total;
}

/* Receives and frees everything pending from the ready list. */
static long drain_ready(struct bench *b) {
    long total = 0;
    for (;;) {
        size_t n = 0;
        cbx_result rc = cbx_hub_recv_ready(b->hub, b->ready_conns,
                                           b->ready_messages, READY_BATCH, &n);
        if (rc == CBX_EMPTY) break;
        if (rc != CBX_OK) {
            fprintf(stderr, "recv_ready: %s: %s\n", cbx_result_name(rc),
                    cbx_last_error());
            exit(1);
        }
        cbx_messages_free(b->ready_messages, n);
        total += (long)n;
    }
    return total;
}

/* Receives and frees everything pending; returns the nanoseconds it took
 * and checks that each member got exactly `depth` messages. */
static double drain(struct bench *b, int depth, enum part measured) {
    if (measured == PART_DRAIN) CALLGRIND_START_INSTRUMENTATION;
    double t0 = now_ns();
    long total = b->ready ? drain_ready(b) : drain_each_connection(b);
    double t1 = now_ns();
    if (measured == PART_DRAIN) CALLGRIND_STOP_INSTRUMENTATION;
    if (total != (long)depth * MEMBERS) {
        fprintf(stderr, "drained %ld, expected %ld\n", total,
                (long)depth * MEMBERS);
        exit(1);
    }
    return t1 - t0;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One round's times, ns per delivery (send) and per message (drain). */
struct round {
    double send, drain;
};

/* Median ns per delivery (send) and per message (drain) over `rounds`, for
 * both hosts, their rounds alternating. */
static void measure(struct bench *per_conn, struct bench *ready, int depth,
                    int fresh, int rounds, struct round *out_per_conn,
                    struct round *out_ready) {
    double sends[2][MAX_ROUNDS], drains[2][MAX_ROUNDS];
    double deliveries = (double)depth * MEMBERS;
    struct bench *hosts[2] = {per_conn, ready};
    if (!fresh) {
        for (int h = 0; h < 2; h++) {
            bench_open(hosts[h]);
            burst(hosts[h], depth, PART_NONE); /* queues grow once, untimed */
            drain(hosts[h], depth, PART_NONE);
        }
    }
    for (int r = 0; r < rounds; r++) {
        for (int h = 0; h < 2; h++) {
            struct bench *b = hosts[h];
            if (fresh) bench_open(b);
            sends[h][r] = burst(b, depth, PART_NONE) / deliveries;
            drains[h][r] = drain(b, depth, PART_NONE) / deliveries;
            if (fresh) bench_close(b);
        }
    }
    if (!fresh) {
        bench_close(per_conn);
        bench_close(ready);
    }
    out_per_conn->send = median(sends[0], rounds);
    out_per_conn->drain = median(drains[0], rounds);
    out_ready->send = median(sends[1], rounds);
    out_ready->drain = median(drains[1], rounds);
}

/* Resident set size in bytes. */
static long rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * 4096;
}

static int run_idle(long n) {
    if (n < 10) return 2;
    cbx_hub *hub = NULL;
    TRY(cbx_hub_new(NULL, &hub));
    uint64_t *conns = calloc((size_t)n, sizeof *conns);
    if (conns == NULL) return 1;
    long before = rss_bytes();
    char name[64];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "user%ld", i);
        TRY(cbx_conn_open(hub, name, 0, &conns[i]));
        snprintf(name, sizeof name, "room%ld", i % (n / 10));
        TRY(cbx_group_add(hub, conns[i], name));
    }
    long after = rss_bytes();
    printf("%ld idle connections (user id, rooms of 10): %.0f B of RSS each\n",
           n, (double)(after - before) / (double)n);
    for (long i = 0; i < n; i++) TRY(cbx_conn_close(hub, conns[i]));
    free(conns);
    cbx_hub_free(hub);
    return 0;
}

static int run_callgrind(struct bench *b, const char *part, const char *mode,
                         int depth) {
    enum part measured;
    if (strcmp(part, "send") == 0 || strcmp(part, "send-ready") == 0)
        measured = PART_SEND;
    else if (strcmp(part, "drain") == 0 || strcmp(part, "drain-ready") == 0)
        measured = PART_DRAIN;
    else return 2;
    b->ready = strstr(part, "-ready") != NULL;
    int fresh;
    if (strcmp(mode, "fresh") == 0) fresh = 1;
    else if (strcmp(mode, "reused") == 0) fresh = 0;
    else return 2;
    if (depth < 1) return 2;
    bench_open(b);
    if (!fresh) {
        burst(b, depth, PART_NONE);
        drain(b, depth, PART_NONE);
    }
    burst(b, depth, measured);
    drain(b, depth, measured);
    bench_close(b);
    printf("deliveries: %d\n", depth * MEMBERS);
    return 0;
}

int main(int argc, char **argv) {
    static struct bench per_conn, ready;
    memset(per_conn.payload, 'x', PAYLOAD);
    memset(ready.payload, 'x', PAYLOAD);
    ready.ready = 1;
    if (argc == 3 && strcmp(argv[1], "--idle") == 0)
        return run_idle(atol(argv[2]));
    if (argc == 5 && strcmp(argv[1], "--callgrind") == 0)
        return run_callgrind(&per_conn, argv[2], argv[3], atoi(argv[4]));
    int rounds = 15;
    if (argc == 2 && strcmp(argv[1], "--quick") == 0) rounds = 3;
    else if (argc != 1) {
        fprintf(stderr,
                "usage: bench_burst [--quick]\n"
                "       bench_burst --idle N\n"
                "       bench_burst --callgrind "
                "send|drain|send-ready|drain-ready fresh|reused DEPTH\n");
        return 2;
    }
    static const int depths[] = {1, 10, 64, 256};
    printf("%d members, %d B text, median of %d rounds; per connection: "
           "cbx_conn_recv_batch %d a call; ready list: ready fd on, "
           "cbx_hub_recv_ready %d a call\n\n",
           MEMBERS, PAYLOAD, rounds, BATCH, READY_BATCH);
    printf("| depth | queues | send ns, per connection | drain ns, per "
           "connection | send ns, ready fd on | drain ns, ready list |\n");
    printf("|---:|:---|---:|---:|---:|---:|\n");
    for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
        for (int fresh = 1; fresh >= 0; fresh--) {
            struct round pc, rl;
            measure(&per_conn, &ready, depths[d], fresh, rounds, &pc, &rl);
            printf("| %d | %s | %.1f | %.1f | %.1f | %.1f |\n", depths[d],
                   fresh ? "fresh" : "reused", pc.send, pc.drain, rl.send,
                   rl.drain);
            fflush(stdout);
        }
    }
    return 0;
}
