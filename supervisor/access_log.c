/*
 * access_log.c - the access log's writer thread (access_log.h).
 *
 * Two buffers: the event loop appends to `fill` under the lock (a memcpy);
 * the writer swaps `fill` and `drain` under the lock and writes `drain`
 * outside it. The lock is never held across I/O, so the loop waits at most
 * for a pointer swap.
 */
#include "ringmaster/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_all(rm_access_log_t *log, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (log->write_errors++ == 0)
                fprintf(stderr, "ringmaster: access log: write failed: %s (lines are lost)\n",
                        strerror(errno));
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void *writer_main(void *arg)
{
    rm_access_log_t *log = arg;
    pthread_mutex_lock(&log->lock);
    for (;;) {
        while (log->fill_len == 0 && !log->stop)
            pthread_cond_wait(&log->wake, &log->lock);
        if (log->fill_len == 0 && log->stop)
            break;
        char *full = log->fill;
        size_t len = log->fill_len;
        log->fill = log->drain;
        log->fill_len = 0;
        log->drain = full;
        pthread_mutex_unlock(&log->lock);
        write_all(log, full, len);
        pthread_mutex_lock(&log->lock);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

int rm_access_log_start(rm_access_log_t *log, const char *path)
{
    memset(log, 0, sizeof(*log));
    log->fd = -1;
    if (strcmp(path, "-") == 0) {
        log->fd = STDOUT_FILENO;
    } else {
        /* 0640: the log names clients and what they asked for. */
        log->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (log->fd < 0) {
            int err = errno;
            fprintf(stderr, "ringmaster: error: --access-log: cannot open %s: %s\n", path,
                    strerror(err));
            return -err;
        }
        log->own_fd = true;
    }
    log->cap = RM_ACCESS_LOG_BUFFER;
    log->fill = malloc(log->cap);
    log->drain = malloc(log->cap);
    int rc = -ENOMEM;
    if (!log->fill || !log->drain)
        goto fail;
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    rc = -pthread_create(&log->thread, NULL, writer_main, log);
    if (rc) {
        pthread_cond_destroy(&log->wake);
        pthread_mutex_destroy(&log->lock);
        goto fail;
    }
    log->started = true;
    return 0;
fail:
    fprintf(stderr, "ringmaster: error: --access-log: cannot start its writer: %s\n",
            strerror(-rc));
    free(log->fill);
    free(log->drain);
    if (log->own_fd)
        close(log->fd);
    memset(log, 0, sizeof(*log));
    log->fd = -1;
    return rc;
}

bool rm_access_log_submit(rm_access_log_t *log, const char *line, size_t len)
{
    if (!log->started)
        return false;
    pthread_mutex_lock(&log->lock);
    bool fits = log->fill_len + len <= log->cap;
    if (fits) {
        bool was_empty = log->fill_len == 0;
        memcpy(log->fill + log->fill_len, line, len);
        log->fill_len += len;
        if (was_empty)
            pthread_cond_signal(&log->wake);
    }
    pthread_mutex_unlock(&log->lock);
    return fits;
}

void rm_access_log_stop(rm_access_log_t *log)
{
    if (!log->started)
        return;
    pthread_mutex_lock(&log->lock);
    log->stop = true;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    pthread_join(log->thread, NULL);
    pthread_cond_destroy(&log->wake);
    pthread_mutex_destroy(&log->lock);
    free(log->fill);
    free(log->drain);
    if (log->own_fd)
        close(log->fd);
    memset(log, 0, sizeof(*log));
    log->fd = -1;
}
