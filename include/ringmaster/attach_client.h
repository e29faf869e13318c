/*
 * attach_client.h - ask a supervisor for a lane over its control socket
 * (control_proto.h, docs/attach.md).
 */
#ifndef RINGMASTER_ATTACH_CLIENT_H
#define RINGMASTER_ATTACH_CLIENT_H

#include "ringmaster/control_proto.h"

#include <stddef.h>
#include <stdint.h>

/* Connect to `control`, send the attach request `req` and read the answer.
 * Blocking. On success returns 0 with the lane granted and fds filled, in
 * order: the region memfd, the doorbell eventfd, our end of the control
 * socketpair (all close-on-exec, owned by the caller). Otherwise -errno with
 * one readable line in `why`: -EPERM when the supervisor refused (its reason
 * quoted), -EBADMSG for a malformed answer, or the socket's error. */
int rm_attach_request(const char *control, const rm_ctlp_request_t *req, uint32_t *lane,
                      int fds[RM_CTLP_ATTACH_FDS], char *why, size_t why_len);

#endif
