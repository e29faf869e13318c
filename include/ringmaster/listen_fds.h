/*
 * listen_fds.h - a listening socket inherited from systemd (socket
 * activation, sd_listen_fds(3)) or any manager that follows the protocol.
 *
 * The manager passes sockets as descriptors 3, 4, ... and sets LISTEN_FDS to
 * their count and LISTEN_PID to the pid they are meant for (LISTEN_FDNAMES,
 * optional, names them). ringmaster serves one socket, so it takes exactly
 * one, without linking libsystemd.
 */
#ifndef RINGMASTER_LISTEN_FDS_H
#define RINGMASTER_LISTEN_FDS_H

#include <stddef.h>

#define RM_LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */

/* Take the inherited listening socket, if the environment passes one to this
 * process. Always unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so that
 * workers do not see them; sets FD_CLOEXEC on what it takes.
 * Returns the descriptor (3); -ENOENT when nothing was passed to this process
 * (no LISTEN_FDS, or LISTEN_PID names another process); -EINVAL with one
 * readable line in `err` when what was passed cannot be served: more than one
 * descriptor, or one that is not a listening TCP (IPv4/IPv6) stream socket. */
int rm_listen_fds_take(char *err, size_t err_len);

#endif
