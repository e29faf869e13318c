/*
 * test_log.c - the log line formats, level filtering and parsing.
 *
 * Each test points stderr at a pipe, logs, and reads back exactly what one
 * call wrote. The record tests point it at a SOCK_SEQPACKET socket instead,
 * where each read returns exactly one write(2): a record split over two
 * writes shows as two packets.
 */
#include "ringmaster/log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int pipe_rd = -1;

/* Send stderr into a pipe; the test process is Criterion's own fork. */
static void capture(void)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    pipe_rd = p[0];
    rm_log_reset();
}

/* What the last call wrote: one write(2), so one read gets all of it. */
static const char *captured(void)
{
    static char buf[8192];
    ssize_t n = read(pipe_rd, buf, sizeof(buf) - 1);
    cr_assert_gt(n, 0, "nothing was logged");
    buf[n] = '\0';
    return buf;
}

Test(log, defaults_and_reset)
{
    rm_log_reset();
    cr_assert_eq(rm_log_conf.level, RM_LOG_INFO);
    cr_assert_eq(rm_log_conf.format, RM_LOG_PLAIN);
    cr_assert_str_eq(rm_log_conf.role, "ringmaster");
    rm_log_conf = (rm_log_conf_t){RM_LOG_DEBUG, RM_LOG_JSON, "worker 3"};
    rm_log_reset();
    cr_assert_eq(rm_log_conf.level, RM_LOG_INFO);
    cr_assert_eq(rm_log_conf.format, RM_LOG_PLAIN);
    cr_assert_str_eq(rm_log_conf.role, "ringmaster");
}

Test(log, plain_line)
{
    capture();
    rm_log_conf.role = "supervisor";
    RM_INFO("listening on %s:%d", "127.0.0.1", 8000);
    char want[128];
    snprintf(want, sizeof(want), "ringmaster[supervisor %d]: info: listening on 127.0.0.1:8000\n",
             (int)getpid());
    cr_assert_str_eq(captured(), want);

    RM_ERROR("boom");
    snprintf(want, sizeof(want), "ringmaster[supervisor %d]: error: boom\n", (int)getpid());
    cr_assert_str_eq(captured(), want);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

Test(log, level_is_checked_before_arguments_are_evaluated)
{
    capture();
    rm_log_conf.level = RM_LOG_WARN;
    RM_INFO("%d", side_effect());
    RM_DEBUG("%d", side_effect());
    cr_assert_eq(evaluated, 0, "filtered-out arguments were evaluated");
    RM_WARN("%d", side_effect());
    cr_assert_eq(evaluated, 1);
    cr_assert_not_null(strstr(captured(), ": warn: 1\n"));
}

Test(log, json_line_with_escapes)
{
    capture();
    rm_log_conf.format = RM_LOG_JSON;
    rm_log_conf.role = "worker \"0\"";
    /* quote, backslash, newline, tab, a control byte, UTF-8, invalid UTF-8 */
    RM_WARN("a\"b\\c\nd\te\x01 caf\xc3\xa9 \xff!");
    const char *line = captured();

    cr_assert_eq(strncmp(line, "{\"ts\":\"", 7), 0, "%s", line);
    /* 2026-11-25T17:00:00.123Z: check the shape of the timestamp */
    const char *ts = line + 7;
    cr_assert_eq(ts[4], '-');
    cr_assert_eq(ts[10], 'T');
    cr_assert_eq(ts[19], '.');
    cr_assert_eq(ts[23], 'Z');
    cr_assert_eq(ts[24], '"');

    char want[256];
    snprintf(want, sizeof(want),
             "\",\"level\":\"warn\",\"role\":\"worker \\\"0\\\"\",\"pid\":%d,"
             "\"msg\":\"a\\\"b\\\\c\\nd\\te\\u0001 caf\xc3\xa9 \\ufffd!\"}\n",
             (int)getpid());
    cr_assert_str_eq(ts + 24, want);
}

Test(log, long_messages_are_cut_to_one_line)
{
    capture();
    static char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    RM_INFO("%s", big);
    const char *line = captured();
    size_t n = strlen(line);
    cr_assert_leq(n, 4096);
    cr_assert_eq(line[n - 1], '\n');
    cr_assert_eq(strchr(line, '\n'), line + n - 1, "exactly one line");

    /* JSON: the cut never splits an escape, and the object is closed. */
    rm_log_conf.format = RM_LOG_JSON;
    memset(big, '"', sizeof(big) - 1);
    RM_INFO("%s", big);
    line = captured();
    n = strlen(line);
    cr_assert_leq(n, 4096);
    cr_assert_eq(strcmp(line + n - 3, "\"}\n"), 0, "%s", line + n - 10);
    cr_assert_eq(strstr(line, "\\\"\"}"), line + n - 5, "last escape complete");
}

Test(log, errno_is_preserved)
{
    capture();
    errno = EACCES;
    RM_ERROR("open failed: %s", strerror(errno));
    cr_assert_eq(errno, EACCES);
    captured();
}

Test(log, parse_level_and_format)
{
    rm_log_level_t level;
    rm_log_format_t format;
    const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rm_log_parse_level(names[i], &level), 0);
        cr_assert_eq(level, (rm_log_level_t)i);
    }
    cr_assert_eq(rm_log_parse_level("DEBUG", &level), 0, "case does not matter");
    cr_assert_eq(level, RM_LOG_DEBUG);
    level = RM_LOG_WARN;
    cr_assert_eq(rm_log_parse_level("verbose", &level), -EINVAL);
    cr_assert_eq(rm_log_parse_level("", &level), -EINVAL);
    cr_assert_eq(rm_log_parse_level(NULL, &level), -EINVAL);
    cr_assert_eq(level, RM_LOG_WARN, "a refused value leaves the output alone");

    cr_assert_eq(rm_log_parse_format("json", &format), 0);
    cr_assert_eq(format, RM_LOG_JSON);
    cr_assert_eq(rm_log_parse_format("plain", &format), 0);
    cr_assert_eq(format, RM_LOG_PLAIN);
    cr_assert_eq(rm_log_parse_format("yaml", &format), -EINVAL);
}

/* stderr as a packet socket: one recv, one write(2). */
static void capture_packets(void)
{
    int sv[2];
    int big = 1 << 20;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    cr_assert_eq(dup2(sv[1], STDERR_FILENO), STDERR_FILENO);
    close(sv[1]);
    pipe_rd = sv[0];
    rm_log_reset();
}

/* One write(2)'s bytes (NUL-terminated, owned by the caller), or NULL if
 * nothing is waiting. */
static char *packet(void)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    ssize_t n = recv(pipe_rd, buf, cap, MSG_DONTWAIT);
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static const char trace[] = "Traceback (most recent call last):\n"
                            "  File \"app.py\", line 3, in app\n"
                            "    1 / 0\n"
                            "ZeroDivisionError: division by zero\n";

Test(log, record_with_detail_is_one_write)
{
    capture_packets();
    rm_log_conf.role = "worker 0";
    rm_log_write_detail(RM_LOG_ERROR, trace, "GET /x: the app raised %s; answered 500",
                        "ZeroDivisionError: division by zero");
    char *rec = packet();
    cr_assert_not_null(rec);
    char want[512];
    snprintf(want, sizeof(want),
             "ringmaster[worker 0 %d]: error: GET /x: the app raised ZeroDivisionError: division "
             "by zero; answered 500\n%s",
             (int)getpid(), trace);
    cr_assert_str_eq(rec, want);
    cr_assert_null(packet(), "the record took more than one write");
    free(rec);

    /* A detail without a final newline still ends the record with one. */
    rm_log_write_detail(RM_LOG_WARN, "one\ntwo", "x");
    rec = packet();
    cr_assert_not_null(rec);
    cr_assert_eq(strcmp(rec + strlen(rec) - 12, ": x\none\ntwo\n"), 0, "%s", rec);
    free(rec);
}

Test(log, held_detail_goes_to_the_next_error_record_only)
{
    capture_packets();
    rm_log_hold_detail(strdup(trace));
    RM_WARN("not this one");
    char *rec = packet();
    cr_assert_not_null(rec);
    cr_assert_null(strstr(rec, "Traceback"), "a warning took the held traceback: %s", rec);
    free(rec);

    RM_ERROR("GET /x: the app raised ZeroDivisionError: division by zero; answered 500");
    rec = packet();
    cr_assert_not_null(rec);
    const char *nl = strchr(rec, '\n');
    cr_assert_not_null(nl);
    cr_assert_str_eq(nl + 1, trace, "the traceback is not right under its line: %s", rec);
    cr_assert_null(packet(), "the record took more than one write");
    free(rec);

    RM_ERROR("later");
    rec = packet();
    cr_assert_null(strstr(rec, "Traceback"), "a detail was taken twice: %s", rec);
    free(rec);

    rm_log_hold_detail(strdup(trace));
    rm_log_drop_detail();
    RM_ERROR("after a drop");
    rec = packet();
    cr_assert_null(strstr(rec, "Traceback"), "a dropped detail was logged: %s", rec);
    free(rec);
    /* Taken back around another error, then held again: each record its own. */
    rm_log_hold_detail(strdup(trace));
    char *mine = rm_log_take_detail();
    cr_assert_str_eq(mine, trace);
    rm_log_hold_detail(strdup("ValueError: close failed\n"));
    RM_ERROR("close() raised");
    rec = packet();
    cr_assert_null(strstr(rec, "Traceback"), "%s", rec);
    cr_assert_not_null(strstr(rec, "\nValueError: close failed\n"), "%s", rec);
    free(rec);
    rm_log_hold_detail(mine);
    RM_ERROR("answered 500");
    rec = packet();
    cr_assert_not_null(strstr(rec, "answered 500\nTraceback"), "%s", rec);
    free(rec);
}

Test(log, json_record_carries_the_traceback_escaped)
{
    capture_packets();
    rm_log_conf.format = RM_LOG_JSON;
    rm_log_write_detail(RM_LOG_ERROR, trace, "GET /x: boom");
    char *rec = packet();
    cr_assert_not_null(rec);
    cr_assert_null(packet(), "the record took more than one write");
    const char *tail = strstr(rec, "\"msg\":\"GET /x: boom\",\"traceback\":\"");
    cr_assert_not_null(tail, "%s", rec);
    cr_assert_str_eq(strstr(rec, "\"traceback\":"),
                     "\"traceback\":\"Traceback (most recent call last):\\n"
                     "  File \\\"app.py\\\", line 3, in app\\n"
                     "    1 / 0\\n"
                     "ZeroDivisionError: division by zero\\n\"}\n");
    cr_assert_eq(strchr(rec, '\n'), rec + strlen(rec) - 1, "one line: %s", rec);
    free(rec);
}

/* Longer than PIPE_BUF and than the line buffer: still one write, whole. */
Test(log, long_detail_is_one_write)
{
    capture_packets();
    size_t n = 20000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 80 == 79 ? '\n' : 'a' + (char)(i % 26);
    big[n] = '\0';
    rm_log_write_detail(RM_LOG_ERROR, big, "long");
    char *rec = packet();
    cr_assert_not_null(rec);
    cr_assert_null(packet(), "the record took more than one write");
    const char *nl = strchr(rec, '\n');
    cr_assert_str_eq(nl + 1, big);
    free(rec);

    /* JSON too: escapes may grow it; the object stays whole. */
    rm_log_conf.format = RM_LOG_JSON;
    rm_log_write_detail(RM_LOG_ERROR, big, "long");
    rec = packet();
    cr_assert_not_null(rec);
    cr_assert_null(packet(), "the record took more than one write");
    cr_assert_gt(strlen(rec), n);
    cr_assert_eq(strcmp(rec + strlen(rec) - 3, "\"}\n"), 0);
    free(rec);
    free(big);
}

Test(log, oversized_detail_keeps_its_end)
{
    capture_packets();
    size_t n = RM_LOG_DETAIL_MAX * 2;
    char *big = malloc(n + 64);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 64 == 63 ? '\n' : 'x';
    strcpy(big + n, "ValueError: the end\n");
    rm_log_write_detail(RM_LOG_ERROR, big, "huge");
    char *rec = packet();
    cr_assert_not_null(rec);
    cr_assert_null(packet(), "the record took more than one write");
    cr_assert_leq(strlen(rec), RM_LOG_DETAIL_MAX + 200);
    cr_assert_not_null(strstr(rec, ": huge\n...\nxxx"), "the cut is not marked");
    cr_assert_eq(strcmp(rec + strlen(rec) - 20, "ValueError: the end\n"), 0);
    free(rec);
    free(big);
}
