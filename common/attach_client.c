/*
 * attach_client.c - the attaching side of {"cmd": "attach"}: ask a
 * supervisor's control socket for a lane and take the descriptors that come
 * with the answer (docs/attach.md). Used by attach.c and by tests.
 */
#include "ringmaster/attach_client.h"
#include "ringmaster/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The largest attach answer we accept: it is a few dozen bytes. */
#define ANSWER_MAX 4096

/* Read one response frame and the descriptors riding on it (extra ones are
 * closed). Blocking. Returns 0 with *nfds descriptors, or -errno. */
static int recv_answer(int fd, char *buf, size_t cap, size_t *len, int fds[RM_CTLP_ATTACH_FDS],
                       int *nfds)
{
    *len = 0;
    *nfds = 0;
    while (rm_ctl_frame_check(buf, *len, RM_CTLP_MAX_FRAME) == 0) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * RM_CTLP_ATTACH_FDS)];
        } ctl;
        struct iovec iov = {.iov_base = buf + *len, .iov_len = cap - *len};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl)};
        if (cap == *len)
            return -EMSGSIZE;
        ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int got[RM_CTLP_ATTACH_FDS];
            if (k > RM_CTLP_ATTACH_FDS)
                k = RM_CTLP_ATTACH_FDS; /* the control buffer holds no more */
            memcpy(got, CMSG_DATA(cm), sizeof(int) * (size_t)k);
            for (int i = 0; i < k; i++) {
                if (*nfds < RM_CTLP_ATTACH_FDS)
                    fds[(*nfds)++] = got[i];
                else
                    close(got[i]);
            }
        }
        *len += (size_t)n;
    }
    return 0;
}

int rm_attach_request(const char *control, const rm_ctlp_request_t *req, uint32_t *lane,
                      int fds[RM_CTLP_ATTACH_FDS], char *why, size_t why_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char answer[ANSWER_MAX];
    size_t len = 0;
    int nfds = 0, rc;
    char *frame = NULL;

    if (strlen(control) >= sizeof(sa.sun_path)) {
        snprintf(why, why_len, "--attach %s: path too long", control);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, control, strlen(control) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        snprintf(why, why_len, "cannot connect to the control socket %s: %s", control,
                 strerror(-rc));
        goto out;
    }
    ssize_t n = rm_ctlp_encode_request(req, &frame);
    rc = n < 0 ? (int)n : rm_ctl_write_all(fd, frame, (size_t)n);
    if (rc == 0)
        rc = recv_answer(fd, answer, sizeof(answer), &len, fds, &nfds);
    if (rc < 0) {
        snprintf(why, why_len, "the supervisor at %s did not answer the attach: %s", control,
                 strerror(-rc));
        goto out;
    }
    rm_ctlp_response_t resp;
    n = rm_ctlp_decode_response(answer, len, &resp);
    if (n <= 0) {
        snprintf(why, why_len, "the supervisor's attach answer is malformed");
        rc = -EBADMSG;
    } else if (!resp.ok) {
        snprintf(why, why_len, "the supervisor refused the attach: %s", resp.error);
        rc = -EPERM;
    } else if (!resp.has_lane || nfds != RM_CTLP_ATTACH_FDS) {
        snprintf(why, why_len, "the supervisor's attach answer lacks the lane or descriptors");
        rc = -EBADMSG;
    } else {
        *lane = resp.lane;
    }
    rm_ctlp_response_deinit(&resp);
out:
    if (rc < 0)
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    free(frame);
    if (fd >= 0)
        close(fd);
    return rc;
}
