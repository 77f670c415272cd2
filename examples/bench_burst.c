/*
 * bench_burst.c: fan-out under bursts, through the C ABI.
 *
 * One group of 1000 members, 100-byte text payloads. For each queue depth
 * (1, 10, 64, 256) it makes `depth` group sends in a row, timing only the
 * sends, then drains every member with cbx_conn_recv_batch (256 a call)
 * and cbx_messages_free, timing the drain separately. Every member then
 * holds `depth` messages at the end of the burst.
 *
 * Two cases a depth:
 *   fresh: a new hub and new connections each round, so every queue
 *          grows from empty during the burst (the worst case);
 *   reused: one hub, round after round, so queues have held `depth`
 *          messages before (a long-lived server's steady state).
 * Each figure is the median of the rounds.
 *
 * `bench_burst --callgrind send|drain fresh|reused DEPTH` runs one round
 * with callgrind's instrumentation on only around the sends or only around
 * the drain (run it under `valgrind --tool=callgrind --instr-atstart=no`):
 * the instruction count, divided by the deliveries, is the stable number
 * on a shared machine. scripts/bench-burst.sh builds and runs everything.
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
    uint64_t conns[MEMBERS];
    uint8_t payload[PAYLOAD];
    cbx_message *batch[BATCH];
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

/* Receives and frees everything pending; returns the nanoseconds it took
 * and checks that each member got exactly `depth` messages. */
static double drain(struct bench *b, int depth, enum part measured) {
    long total = 0;
    if (measured == PART_DRAIN) CALLGRIND_START_INSTRUMENTATION;
    double t0 = now_ns();
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

/* Median ns per delivery (send) and per message (drain) over `rounds`. */
static void measure(struct bench *b, int depth, int fresh, int rounds,
                    double *send_ns, double *drain_ns) {
    double sends[MAX_ROUNDS], drains[MAX_ROUNDS];
    double deliveries = (double)depth * MEMBERS;
    if (!fresh) {
        bench_open(b);
        burst(b, depth, PART_NONE); /* the queues grow once, untimed */
        drain(b, depth, PART_NONE);
    }
    for (int r = 0; r < rounds; r++) {
        if (fresh) bench_open(b);
        sends[r] = burst(b, depth, PART_NONE) / deliveries;
        drains[r] = drain(b, depth, PART_NONE) / deliveries;
        if (fresh) bench_close(b);
    }
    if (!fresh) bench_close(b);
    *send_ns = median(sends, rounds);
    *drain_ns = median(drains, rounds);
}

static int run_callgrind(struct bench *b, const char *part, const char *mode,
                         int depth) {
    enum part measured;
    if (strcmp(part, "send") == 0) measured = PART_SEND;
    else if (strcmp(part, "drain") == 0) measured = PART_DRAIN;
    else return 2;
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
    static struct bench b;
    memset(b.payload, 'x', PAYLOAD);
    if (argc == 5 && strcmp(argv[1], "--callgrind") == 0)
        return run_callgrind(&b, argv[2], argv[3], atoi(argv[4]));
    int rounds = 15;
    if (argc == 2 && strcmp(argv[1], "--quick") == 0) rounds = 3;
    else if (argc != 1) {
        fprintf(stderr,
                "usage: bench_burst [--quick]\n"
                "       bench_burst --callgrind send|drain fresh|reused DEPTH\n");
        return 2;
    }
    static const int depths[] = {1, 10, 64, 256};
    printf("%d members, %d B text, drain %d a call, median of %d rounds\n\n",
           MEMBERS, PAYLOAD, BATCH, rounds);
    printf("| depth | queues | send: ns per delivery | drain: ns per message |\n");
    printf("|---:|:---|---:|---:|\n");
    for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
        for (int fresh = 1; fresh >= 0; fresh--) {
            double send_ns, drain_ns;
            measure(&b, depths[d], fresh, rounds, &send_ns, &drain_ns);
            printf("| %d | %s | %.1f | %.1f |\n", depths[d],
                   fresh ? "fresh" : "reused", send_ns, drain_ns);
            fflush(stdout);
        }
    }
    return 0;
}
