/*
 * tests/tsan/criterion/criterion.h - a stand-in for Criterion in ThreadSanitizer
 * builds only.
 *
 * Criterion cannot start under TSan: its BoxFort arena wants a fixed mapping
 * at a random address, and TSan's shadow memory covers nearly all of them
 * ("Could not initialize inheritable arena", Criterion issue #274). With
 * RINGMASTER_TSAN, tests/CMakeLists.txt puts this directory first on the
 * include path of the suites marked TSAN, so the same test sources build
 * against this header and tests/tsan/runner.c instead.
 *
 * It covers the subset of the API those suites use: Test() with .timeout,
 * cr_assert/cr_expect and their _eq/_neq/_lt/_leq/_gt/_geq/_null/_not_null/
 * _str_eq/_arr_eq forms, and cr_skip. Each test runs in its own forked
 * process, like Criterion, and the run ends with Criterion's synthesis line.
 * Messages must be string literals (Criterion's own convention).
 */
#ifndef RM_TSAN_CRITERION_H
#define RM_TSAN_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct rm_tsan_attrs {
    unsigned timeout; /* seconds, 0: none */
    bool disabled;
    const char *description;
};

struct rm_tsan_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct rm_tsan_attrs attrs;
    struct rm_tsan_test *next;
};

void rm_tsan_register(struct rm_tsan_test *test);
/* Report a failed check; `fatal` ends the test. `fmt` may be "", which is why
 * these carry no format attribute (-Wformat-zero-length). */
void rm_tsan_fail(const char *file, int line, bool fatal, const char *expr, const char *fmt, ...);
_Noreturn void rm_tsan_skip(const char *fmt, ...);

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name##_fn(void);                                                         \
    static struct rm_tsan_test suite##_##name##_test = {                                           \
        #suite, #name, suite##_##name##_fn, {__VA_ARGS__}, NULL};                                  \
    __attribute__((constructor)) static void suite##_##name##_register(void)                       \
    {                                                                                              \
        rm_tsan_register(&suite##_##name##_test);                                                  \
    }                                                                                              \
    static void suite##_##name##_fn(void)

#define RM_TSAN_CHECK(fatal, cond, expr, ...)                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            rm_tsan_fail(__FILE__, __LINE__, (fatal), (expr), "" __VA_ARGS__);                     \
    } while (0)

#define cr_assert(c, ...) RM_TSAN_CHECK(true, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...) RM_TSAN_CHECK(false, (c), #c, __VA_ARGS__)
#define RM_TSAN_CMP(fatal, a, op, b, ...)                                                          \
    RM_TSAN_CHECK(fatal, (a)op(b), #a " " #op " " #b, __VA_ARGS__)

#define cr_assert_eq(a, b, ...) RM_TSAN_CMP(true, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) RM_TSAN_CMP(true, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) RM_TSAN_CMP(true, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) RM_TSAN_CMP(true, a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) RM_TSAN_CMP(true, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) RM_TSAN_CMP(true, a, >=, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) RM_TSAN_CMP(false, a, ==, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) RM_TSAN_CMP(false, a, !=, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) RM_TSAN_CMP(false, a, <, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) RM_TSAN_CMP(false, a, <=, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) RM_TSAN_CMP(false, a, >, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) RM_TSAN_CMP(false, a, >=, b, __VA_ARGS__)

#define cr_assert_null(p, ...) RM_TSAN_CHECK(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) RM_TSAN_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) RM_TSAN_CHECK(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) RM_TSAN_CHECK(false, (p) != NULL, #p " != NULL", __VA_ARGS__)

#define cr_assert_str_eq(a, b, ...)                                                                \
    RM_TSAN_CHECK(true, strcmp((a), (b)) == 0, #a " equals " #b, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...)                                                             \
    RM_TSAN_CHECK(true, memcmp((a), (b), (n)) == 0, #a " equals " #b, __VA_ARGS__)

#define cr_skip(...) rm_tsan_skip("" __VA_ARGS__)

#endif
