/*
 * listen_fds.c - take a socket-activated listener (sd_listen_fds semantics).
 */
#include "ringmaster/listen_fds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_count(const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* 0 when `fd` is a listening TCP socket; else -EINVAL with the reason. */
static int check_listener(int fd, char *err, size_t err_len)
{
    int type = 0, listening = 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(type), alen = sizeof(ss);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        snprintf(err, err_len, "LISTEN_FDS: descriptor %d is not a socket (%s)", fd,
                 strerror(errno));
        return -EINVAL;
    }
    len = sizeof(listening);
    if (type != SOCK_STREAM || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
        !listening || getsockname(fd, (struct sockaddr *)&ss, &alen) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        snprintf(err, err_len,
                 "LISTEN_FDS: descriptor %d is not a listening TCP socket "
                 "(a .socket unit needs ListenStream=PORT or ADDRESS:PORT)",
                 fd);
        return -EINVAL;
    }
    return 0;
}

int rm_listen_fds_take(char *err, size_t err_len)
{
    const char *pid_text = getenv("LISTEN_PID"), *fds_text = getenv("LISTEN_FDS");
    long pid = 0, count = 0;
    int rc = -ENOENT;
    /* Not for us (another process's variables, inherited by mistake): ignore. */
    if (!pid_text || !fds_text || parse_count(pid_text, &pid) || pid != (long)getpid())
        goto out;
    if (parse_count(fds_text, &count)) {
        snprintf(err, err_len, "LISTEN_FDS: expected a count, got '%s'", fds_text);
        rc = -EINVAL;
        goto out;
    }
    if (count == 0)
        goto out;
    if (count > 1) {
        snprintf(err, err_len,
                 "LISTEN_FDS=%ld: ringmaster serves one listening socket; give its .socket "
                 "unit one ListenStream=",
                 count);
        rc = -EINVAL;
        goto out;
    }
    int fd = RM_LISTEN_FDS_START;
    if ((rc = check_listener(fd, err, err_len)))
        goto out;
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        snprintf(err, err_len, "LISTEN_FDS: descriptor %d: %s", fd, strerror(errno));
        rc = -EINVAL;
        goto out;
    }
    rc = fd;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}
