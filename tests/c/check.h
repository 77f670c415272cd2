/*
 * Tiny assertion helpers shared by the C tests (tests/c_api.rs builds and
 * runs them). A failed CHECK prints where and why and the test goes on, so
 * one run reports every broken behaviour; REQUIRE stops the program when
 * going on would only crash. main() ends with `return check_summary();`.
 */

#ifndef CBX_TEST_CHECK_H
#define CBX_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channelbox.h"

static int check_failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,           \
                    __LINE__, #cond);                                        \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                        \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* Checks a call's result code, and that cbx_last_error() agrees with it:
 * "" after CBX_OK, a message after any other code. */
#define CHECK_RC(call, expected)                                             \
    do {                                                                     \
        cbx_result rc_ = (call);                                             \
        cbx_result want_ = (expected);                                       \
        const char *err_ = cbx_last_error();                                 \
        if (rc_ != want_) {                                                  \
            fprintf(stderr,                                                  \
                    "%s:%d: %s\n    returned %s (%d), expected %s; "         \
                    "last error: \"%s\"\n",                                  \
                    __FILE__, __LINE__, #call, cbx_result_name(rc_),         \
                    (int)rc_, cbx_result_name(want_), err_ ? err_ : "(NULL)"); \
            check_failures++;                                                \
        } else if (err_ == NULL) {                                           \
            fprintf(stderr, "%s:%d: %s: cbx_last_error() is NULL\n",         \
                    __FILE__, __LINE__, #call);                              \
            check_failures++;                                                \
        } else if (want_ == CBX_OK && err_[0] != '\0') {                     \
            fprintf(stderr,                                                  \
                    "%s:%d: %s: succeeded but last error is \"%s\"\n",       \
                    __FILE__, __LINE__, #call, err_);                        \
            check_failures++;                                                \
        } else if (want_ != CBX_OK && err_[0] == '\0') {                     \
            fprintf(stderr, "%s:%d: %s: failed with an empty last error\n",  \
                    __FILE__, __LINE__, #call);                              \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

/* Like CHECK_RC for calls that must succeed before the test can go on. */
#define REQUIRE_OK(call)                                                     \
    do {                                                                     \
        cbx_result rc_ = (call);                                             \
        if (rc_ != CBX_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s\n    returned %s (%d): %s\n",         \
                    __FILE__, __LINE__, #call, cbx_result_name(rc_),         \
                    (int)rc_, cbx_last_error());                             \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_STR_CONTAINS(haystack, needle)                                 \
    do {                                                                     \
        const char *h_ = (haystack);                                         \
        if (h_ == NULL || strstr(h_, (needle)) == NULL) {                    \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n",       \
                    __FILE__, __LINE__, h_ ? h_ : "(NULL)", (needle));       \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

/* Runs one behaviour's test function and says which one ran. */
#define RUN(test)                                                            \
    do {                                                                     \
        int before_ = check_failures;                                        \
        test();                                                              \
        printf("%s %s\n", check_failures == before_ ? "ok  " : "FAIL",       \
               #test);                                                       \
        fflush(stdout);                                                      \
    } while (0)

static int check_summary(void) {
    if (check_failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    return 0;
}

/* Convenience: bytes of a string literal or buffer, without the NUL. */
#define BYTES(s) ((const uint8_t *)(s)), strlen(s)

#endif /* CBX_TEST_CHECK_H */
