// Tiny assertion helpers for the C++ tests (tests/c_api.rs builds and runs
// them). A failed CHECK prints where and why and the test goes on; main()
// ends with `return check_summary();`.

#ifndef CBX_TEST_CHECK_HPP
#define CBX_TEST_CHECK_HPP

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "channelbox.hpp"

inline int check_failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,      \
                         __LINE__, #cond);                                   \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

// `stmt` must throw channelbox::error (or a subclass) with result `want`,
// the code's name, and a non-empty detail that contains `needle`.
#define CHECK_THROWS(stmt, want, needle)                                     \
    do {                                                                     \
        bool thrown_ = false;                                                \
        try {                                                                \
            stmt;                                                            \
        } catch (const channelbox::error &e_) {                              \
            thrown_ = true;                                                  \
            if (e_.code() != (want) ||                                       \
                e_.name() != channelbox::result_name(want) ||                \
                e_.detail().empty() ||                                       \
                e_.detail().find(needle) == std::string::npos ||             \
                std::string_view(e_.what()).find(e_.name()) != 0) {          \
                std::fprintf(stderr,                                         \
                             "%s:%d: %s\n    threw %s (%d) \"%s\", "         \
                             "expected %s with \"%s\"\n",                    \
                             __FILE__, __LINE__, #stmt, e_.what(),           \
                             (int)e_.code(),                                 \
                             e_.detail().c_str(), #want, needle);            \
                check_failures++;                                            \
            }                                                                \
        } catch (const std::exception &e_) {                                 \
            thrown_ = true;                                                  \
            std::fprintf(stderr, "%s:%d: %s threw a foreign %s\n",           \
                         __FILE__, __LINE__, #stmt, e_.what());              \
            check_failures++;                                                \
        }                                                                    \
        if (!thrown_) {                                                      \
            std::fprintf(stderr, "%s:%d: %s did not throw %s\n", __FILE__,  \
                         __LINE__, #stmt, #want);                            \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

// Runs one behaviour's test function; an exception escaping it fails it.
#define RUN(test)                                                            \
    do {                                                                     \
        int before_ = check_failures;                                        \
        try {                                                                \
            test();                                                          \
        } catch (const std::exception &e_) {                                 \
            std::fprintf(stderr, "%s: uncaught %s\n", #test, e_.what());     \
            check_failures++;                                                \
        }                                                                    \
        std::printf("%s %s\n", check_failures == before_ ? "ok  " : "FAIL",  \
                    #test);                                                  \
        std::fflush(stdout);                                                 \
    } while (0)

inline int check_summary() {
    if (check_failures > 0) {
        std::fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    return 0;
}

#endif // CBX_TEST_CHECK_HPP
