/*
 * tests/tsan/runner.c - runs the tests registered through the stand-in
 * criterion.h (ThreadSanitizer builds only; see that header for why).
 *
 * Each test runs in a forked child of this single-threaded runner, so a test
 * may start threads freely. Exit status 0 is a pass, 1 a failed check, 77 a
 * skip; a signal or a timeout is a crash. The last line matches Criterion's:
 *   [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N
 * Command-line options are accepted and ignored, so ctest can pass the same
 * ones it passes to Criterion.
 */
#include "criterion/criterion.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_SKIP 77

static struct rm_tsan_test *tests;
static bool expect_failed; /* in the child: a cr_expect failed */

void rm_tsan_register(struct rm_tsan_test *test)
{
    /* Insert sorted by suite, then name, like Criterion's listing. */
    struct rm_tsan_test **p = &tests;
    while (*p && (strcmp((*p)->suite, test->suite) < 0 ||
                  (strcmp((*p)->suite, test->suite) == 0 && strcmp((*p)->name, test->name) < 0)))
        p = &(*p)->next;
    test->next = *p;
    *p = test;
}

void rm_tsan_fail(const char *file, int line, bool fatal, const char *expr, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[----] %s:%d: %s failed: %s\n[----]   ", file, line,
            fatal ? "Assertion" : "Expectation", expr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (fatal)
        _exit(1);
    expect_failed = true;
}

void rm_tsan_skip(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[SKIP] ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(EXIT_SKIP);
}

int main(void)
{
    unsigned tested = 0, passing = 0, failing = 0, crashing = 0;
    for (struct rm_tsan_test *t = tests; t; t = t->next) {
        if (t->attrs.disabled)
            continue;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (t->attrs.timeout)
                alarm(t->attrs.timeout); /* SIGALRM: counted as a crash */
            t->fn();
            fflush(NULL);
            _exit(expect_failed ? 1 : 0);
        }
        int status;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIP)
            continue; /* Criterion leaves skipped tests out of the count */
        tested++;
        const char *verdict;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passing++;
            verdict = "PASS";
        } else if (WIFEXITED(status)) {
            failing++;
            verdict = "FAIL";
        } else {
            crashing++;
            verdict = "CRASH";
        }
        fprintf(stderr, "[%s] %s::%s\n", verdict, t->suite, t->name);
    }
    fprintf(stderr, "[====] Synthesis: Tested: %u | Passing: %u | Failing: %u | Crashing: %u \n",
            tested, passing, failing, crashing);
    return failing || crashing ? 1 : 0;
}
