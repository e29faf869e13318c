/*
 * server.h - the supervisor: one io_uring event loop that owns the listening
 * socket, the client connections, the region and the workers.
 *
 * Kernel features used (Linux 6.0+): multishot accept, multishot recv with a
 * provided-buffer ring, IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN (falls
 * back without them when refused).
 *
 * Chunk ownership inside the supervisor: a chunk it received into, reassembled
 * a head into, or wrote a request's meta into is owned by RM_OWNER_SUPERVISOR
 * and reference counted here (`chunk_refs`, private memory that no worker can
 * touch): one reference for the connection's input queue, one for each request
 * whose bytes lie in it. A response chunk comes from a worker, is transferred
 * to the supervisor when its completion is accepted, and is freed once sent.
 */
#ifndef RINGMASTER_SERVER_H
#define RINGMASTER_SERVER_H

#include "ringmaster/access_log.h"
#include "ringmaster/config.h"
#include "ringmaster/control_proto.h"
#include "ringmaster/control_socket.h"
#include "ringmaster/exchange.h"
#include "ringmaster/http_date.h"
#include "ringmaster/http_parse.h"
#include "ringmaster/region.h"
#include "ringmaster/spill_dir.h"
#include "ringmaster/wire.h"

#include <liburing.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Chunk references a request keeps inline; more spill to the heap (bodies of
 * more than a few chunks, bounded by --max-body-size). */
#define RM_REQ_INLINE_CHUNKS 8

enum rm_conn_state {
    RM_CONN_FREE = 0,
    RM_CONN_READING,    /* parsing input (head or body) */
    RM_CONN_QUEUED,     /* request complete, waiting for a lane with room */
    RM_CONN_DISPATCHED, /* on a lane, response not finished */
    RM_CONN_CLOSING,    /* waiting for in-flight I/O before the fd is closed */
};

/* What a connection is waiting for, and so which timeout applies to it. */
enum rm_timer_kind {
    RM_TIMER_NONE = 0,
    RM_TIMER_HEADER,    /* a request head: absolute from its first byte (slowloris) */
    RM_TIMER_BODY,      /* the next read of a request body: restarts on progress */
    RM_TIMER_KEEPALIVE, /* the next request on an idle connection */
    RM_TIMER_WRITE,     /* the client to read queued output: restarts on progress */
    RM_TIMER_REQUEST,   /* a worker's next completion for its request (--timeout) */
    RM_TIMER_LINGER,    /* reading what a rejected client still sends, before closing */
    RM_TIMER_LANE,      /* a request on a lane no thread took yet (--queue-timeout) */
    RM_TIMER_KINDS,
};

typedef struct rm_conn {
    int fd;
    uint32_t gen;   /* bumped whenever the slot is reused; part of user_data */
    uint8_t state;  /* enum rm_conn_state */
    bool recv_armed;
    bool cancel_sent;
    bool send_busy;
    bool keep_alive;      /* current request allows reuse */
    bool close_after;     /* close once the output queue drains */
    bool peer_eof;        /* the client sent FIN: what it sent before is still answered */
    bool upgrade_asked;   /* the request carries Upgrade (served as plain HTTP/1.1) */
    bool chunk_wait;      /* a new request waits unread for a free chunk (its meta) */
    bool meta_short;      /* this parse found no chunk for the meta */
    uint64_t chunk_wait_since;
    bool wants_buffers;   /* recv stopped on ENOBUFS; re-arm when chunks return */
    bool head_continue;   /* 100 Continue sent for this request */
    bool response_begun;  /* some response bytes were queued for this request */
    bool parsing;         /* a request has begun (rm_http_begin) and is not dropped */
    bool closing;         /* close requested; the slot lives until I/O and lane let go */
    bool timed_out;       /* its worker was killed for --timeout: answer 504 */
    bool spill_waiting;   /* body complete, waiting for its file writes to land */
    bool recv_paused;     /* spill writes lag: no reads until they catch up */
    bool linger;          /* an error answered mid-request: close in stages (RFC 9112 9.6) */
    bool lingering;       /* our side is shut for writing; input is read and dropped */
    bool spill_failed;    /* a write of the spilled body failed */
    uint16_t sink_status; /* the answer when the body sink refuses a piece (not 413) */
    uint64_t body_expected; /* the head's Content-Length, 0 for none or chunked */

    /* A body spilled to a file (spill.c): -1 when it lives in the region. */
    int spill_fd;
    uint32_t spill_pending;   /* writes in flight; the slot is not reused before 0 */
    uint32_t spill_pack;      /* chunk gathering small pieces for one write, or none */
    uint32_t spill_pack_len;
    uint64_t spill_pack_off;  /* file offset of spill_pack's first byte */
    uint64_t spill_len;       /* body bytes handed to the file */
    uint64_t spill_written;   /* bytes the kernel says it wrote */
    uint64_t spill_seq;       /* names the file: SEQ.body in the private spill dir */
    rm_exchange_t ex;     /* the current exchange, for metrics and the access log */

    /* Input: received chunks not yet fully parsed, linked through chunk_next. */
    uint32_t in_head, in_tail;
    /* A head that arrived in several reads, gathered in the supervisor's own
     * memory (conn.c) rather than in a region chunk, so that clients
     * dribbling heads hold none of the region. */
    char *head_buf;         /* malloc'd, NULL when none */
    uint32_t head_buf_len;  /* bytes gathered */
    uint32_t head_buf_cap;  /* bytes allocated (counted in partial_head_bytes) */
    bool head_lf_seen;      /* head_buf holds a line end (the request-line is whole) */
    /* Output: chunks waiting to be sent, linked through chunk_next. */
    uint32_t out_head, out_tail;

    /* The request being parsed or served. */
    rm_http_parser_t parser;
    uint64_t req_id;
    uint32_t lane;          /* lane it was dispatched to */
    uint32_t meta_chunk;    /* RM_CHUNK_NONE until allocated */
    uint32_t meta_len;
    uint32_t slice_count;   /* body slices written into the meta chunk */
    uint32_t feed_chunk;    /* chunk of the buffer being fed to the parser */
    uint32_t body_pack;     /* chunk small body pieces are copied into, or none */
    uint32_t body_pack_len; /* bytes used in body_pack */
    uint64_t enqueued_ns;
    uint64_t dispatched_ns; /* pushed onto its lane */
    bool started;           /* a thread took it (wire.h's run state): --timeout runs */
    uint32_t req_nchunks;
    uint32_t req_cap;
    uint32_t *req_chunks;   /* references this request holds: req_inline or heap */
    uint32_t req_inline[RM_REQ_INLINE_CHUNKS];
    uint32_t queue_next;    /* next connection waiting for a lane, or UINT32_MAX */

    /* Timeout: one list per kind, each ordered by deadline because every
     * kind has one duration and a connection is (re)appended at the tail. */
    uint8_t timer_kind;     /* enum rm_timer_kind */
    uint64_t deadline_ns;
    uint32_t timer_prev, timer_next; /* connection indices, UINT32_MAX at the ends */

    uint64_t resp_sent;     /* bytes of the current request's response sent */
    struct sockaddr_storage peer;
    struct sockaddr_storage local; /* our address on this connection */
} rm_conn_t;

/* A request whose response is finished but whose chunks the worker still reads
 * (RM_DONE_HOLD); freed on RM_DONE_RELEASE or when the worker dies. */
typedef struct rm_held {
    struct rm_held *next;
    uint64_t req_id;
    bool cancelled; /* taken back from the lane (503): still counts as outstanding
                       until the worker pops it and posts RM_DONE_RELEASE */
    uint32_t nchunks;
    uint32_t chunks[];
} rm_held_t;

enum rm_worker_state {
    RM_WORKER_NONE = 0,
    RM_WORKER_STARTING, /* spawned, not ready */
    RM_WORKER_READY,
    RM_WORKER_STOPPING, /* told to stop */
};

typedef struct rm_worker {
    pid_t pid;
    int ctl_fd;            /* our end of the control socketpair, -1 if none */
    uint32_t gen;          /* bumped per spawn; part of user_data */
    uint8_t state;         /* enum rm_worker_state */
    bool ctl_armed;
    bool cut_off;          /* posted garbage: its completions are ignored */
    bool was_ready;        /* reached ready at least once */
    bool retiring;         /* to be replaced (recycling, scale-down): drained when a
                              fresh worker can take over */
    bool stop_sent;        /* draining: "stop" went out */
    uint8_t exit_cause;    /* enum rm_restart_cause: why it is leaving (crash unless
                              we asked it to) */
    bool attached;         /* came over the control socket: not our child, never
                              respawned; its death is seen on pidfd */
    bool pidfd_armed;
    int pidfd;             /* attached: pidfd_open of the peer, -1 otherwise */
    uint32_t app_gen;      /* the app generation it imported (SIGHUP bumps it) */
    uint64_t served_limit; /* --max-requests plus jitter, 0 = none */
    uint64_t spawned_ns;
    uint64_t last_heartbeat_ns; /* the worker's control thread beats every second */
    uint64_t heartbeat_served;  /* requests it says it answered */
    uint32_t outstanding;  /* requests dispatched and not finished */
    uint64_t served;
    bool upgrade_noted;    /* told the log once that its upgrades are served as HTTP */
    rm_held_t *held;
    rm_lane_t lane;
    int loop_bell_fd;      /* the lane's loop bell: an eventfd an event-loop worker
                              watches (lane.h); made for the slot's first worker, kept
                              across its successors; -1 before */
    uint32_t ctl_len;
    char ctl_buf[8192];
    char python[32];
    char mode[24];
} rm_worker_t;

typedef struct rm_metrics_endpoint rm_metrics_endpoint_t; /* metrics.c */

typedef struct rm_server {
    const rm_config_t *cfg; /* borrowed */
    struct io_uring ring;
    bool ring_ready;
    int listen_fd;
    bool accept_armed;
    bool listen_wildcard;             /* bound to 0.0.0.0 or ::: ask each socket */
    uint64_t accept_paused_until_ns;  /* out of descriptors: accepts resume then */
    uint64_t accept_warned_ns;
    struct sockaddr_storage listen_addr;
    int signal_fd;
    int doorbell_fd;       /* eventfd workers write when we sleep */
    uint64_t doorbell_value;
    struct signalfd_siginfo *sig_buf;
    bool stopping;         /* no new connections; exit when idle */
    bool workers_told;     /* stop sent to the workers */
    uint64_t kill_deadline_ns;
    bool fast_stop;
    int exit_code;
    uint64_t stop_deadline_ns;

    rm_region_t region;
    uint16_t *chunk_refs;  /* private reference counts, one per chunk */
    uint32_t *chunk_next;  /* private list links, one per chunk */
    uint32_t *chunk_off;   /* private: first unsent/unparsed byte */
    uint32_t *chunk_len;   /* private: bytes left from chunk_off */

    /* Free chunks that request input leaves to responses (server.c). */
    uint32_t chunk_reserve;

    /* Provided-buffer ring for recv. */
    struct io_uring_buf_ring *buf_ring;
    size_t buf_ring_size;
    uint32_t buf_count;    /* power of two */
    uint32_t *buf_chunk;   /* bid -> chunk, RM_CHUNK_NONE if the slot is empty */
    uint32_t bufs_missing; /* slots without a chunk (pool was exhausted) */
    bool dry_conns;        /* some recv ended on ENOBUFS: re-arm once buffers are there */
    bool chunk_waiters;    /* some connection waits for a chunk (chunk_wait) */

    rm_conn_t *conns;
    uint32_t conn_cap;
    uint32_t conn_count;
    uint32_t *conn_free;   /* stack of free slots */
    uint32_t conn_free_top;
    uint32_t queue_head, queue_tail; /* connections waiting for a lane */
    uint32_t queued;                 /* how many */
    uint32_t timer_head[RM_TIMER_KINDS], timer_tail[RM_TIMER_KINDS];
    uint64_t timer_ns[RM_TIMER_KINDS]; /* duration of each kind */
    uint64_t next_req_seq;
    uint64_t spill_seq;    /* names spilled bodies */
    rm_spill_dir_t spill_dir; /* our private directory in --spill-dir (spill_dir.h) */

    rm_worker_t *workers;
    uint32_t worker_count;   /* slots (= lanes): twice the pool, so replacements can
                                start before the workers they replace leave */
    uint32_t target_workers; /* the pool's size: -w, then SIGTTIN/SIGTTOU */
    uint32_t app_gen;        /* bumped by SIGHUP: older workers are replaced */
    uint32_t quick_deaths;   /* consecutive deaths before ready, for back-off */
    uint64_t spawn_not_before_ns;
    uint64_t next_rss_check_ns;
    uint64_t next_scale_check_ns; /* autoscaling samples once a second */
    uint32_t busy_samples;        /* consecutive samples with every worker busy */
    uint64_t last_busy_ns;        /* when the pool was last short of idle workers */
    uint32_t rr_next;
    bool any_ready;        /* some worker became ready since start */

    rm_metrics_endpoint_t *metrics; /* owned; NULL without --metrics */
    rm_access_log_t access_log;     /* started only with --access-log */
    rm_access_log_format_t access_log_format;
    char *access_log_line;          /* owned: RM_ACCESS_LOG_LINE_MAX bytes to format into */
    rm_control_socket_t control; /* --control: ctl and attached workers */
    uint64_t started_ns;
    uint64_t requests_total;     /* responses finished, all workers */

    rm_http_date_t date;         /* Date of the supervisor's own answers */
    uint64_t partial_head_bytes; /* head_buf capacity over all connections */
    uint64_t partial_head_budget; /* its limit, --max-connections x the head limit: a head
                                     that would pass it gets 503 */
    rm_http_head_t scratch_head; /* the head being parsed; valid during one feed */
    rm_conn_t *feed_conn;        /* the connection being fed to its parser */
} rm_server_t;

/* user_data layout: operation in the top 8 bits, generation in the next 24,
 * connection or worker index in the low 32. */
enum rm_op {
    RM_OP_ACCEPT = 1,
    RM_OP_RECV,
    RM_OP_SEND,
    RM_OP_CANCEL,
    RM_OP_SIGNAL,
    RM_OP_DOORBELL,
    RM_OP_CTL_RECV,
    RM_OP_TIMEOUT,
    RM_OP_SPILL_WRITE, /* connection index in the generation bits, chunk in the low 32 */
    RM_OP_METRICS_ACCEPT, /* the --metrics endpoint (metrics.c) */
    RM_OP_METRICS_RECV,
    RM_OP_METRICS_SEND,
    RM_OP_CONTROL_ACCEPT,
    RM_OP_CONTROL_RECV,
    RM_OP_CONTROL_SEND,
    RM_OP_PIDFD, /* an attached worker's process exited */
};

static inline uint64_t rm_user_data(enum rm_op op, uint32_t gen, uint32_t idx)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffff) << 32) | idx;
}

/* Set up everything (region, socket, ring, workers) and run until stopped.
 * Returns the process exit status. Start-up errors are logged readably. */
int rm_server_run(const rm_config_t *cfg);

/* ---- internal interfaces between the supervisor's files ---- */

/* server.c: I/O submission. */
struct io_uring_sqe *rm_server_sqe(rm_server_t *s);
void rm_server_arm_recv(rm_server_t *s, rm_conn_t *c);
void rm_server_cancel_recv(rm_server_t *s, rm_conn_t *c); /* ends a multishot recv */
void rm_server_flush_output(rm_server_t *s, rm_conn_t *c);
void rm_server_close_conn(rm_server_t *s, rm_conn_t *c);
uint64_t rm_now_ns(void);
/* A listening TCP socket on host:port, logged as "<label> http://addr:port";
 * `bound` (may be NULL) gets the address. Returns the fd, or -errno after
 * printing one readable line that names `flag`. */
int rm_server_listen(const char *host, uint16_t port, int backlog, const char *flag,
                     const char *label, struct sockaddr_storage *bound);
/* Stop serving: graceful (finish in-flight requests) or fast. */
void rm_server_begin_stop(rm_server_t *s, bool fast, const char *why);

/* conn.c: chunk references and connection input. */
/* Finish the meta of a request whose body is complete and hand it on. */
void rm_conn_request_complete(rm_server_t *s, rm_conn_t *c);
void rm_chunk_ref(rm_server_t *s, uint32_t chunk);
void rm_chunk_unref(rm_server_t *s, uint32_t chunk);
/* A chunk owned by the supervisor with one reference, or RM_CHUNK_NONE. Plain
 * alloc may take the response reserve (the supervisor's own answers); _input
 * (receive buffers, heads, metas, body packing) never does. */
uint32_t rm_chunk_alloc(rm_server_t *s);
uint32_t rm_chunk_alloc_input(rm_server_t *s);
rm_conn_t *rm_conn_alloc(rm_server_t *s, int fd);
void rm_conn_release(rm_server_t *s, rm_conn_t *c); /* after the fd is closed */
void rm_conn_input(rm_server_t *s, rm_conn_t *c, uint32_t chunk, uint32_t len);
void rm_conn_process(rm_server_t *s, rm_conn_t *c);
/* Go on with the connections whose next request waited for a free chunk,
 * while the pool has some outside the response reserve. */
void rm_conn_resume_waiting(rm_server_t *s);
void rm_conn_drop_request(rm_server_t *s, rm_conn_t *c);
/* The request's body moved to a file (spill.c): let go of the body chunks it
 * held in the region (the head chunk stays; the writes hold what they need). */
void rm_conn_drop_body_refs(rm_server_t *s, rm_conn_t *c);
/* The pool ran dry while bodies wait in it for the rest of their bytes: the
 * ones over 64 KiB go to their files now, so that their chunks come back and
 * reads go on (spill.c). Returns how many began spilling. */
unsigned rm_spill_relieve(rm_server_t *s);
void rm_conn_respond_error(rm_server_t *s, rm_conn_t *c, int status, bool close);
/* The supervisor's own short answer to `status` (Server, Date, a plain-text
 * body; Retry-After with 503) into p[0..cap); returns its length, as snprintf. */
int rm_conn_format_error(rm_server_t *s, char *p, size_t cap, int status, bool close);
/* Give up on the request being read or waiting for a lane: drop it and its
 * unread input, answer `status` and close (or just close if a response had
 * begun). No effect on a request a worker has. */
void rm_conn_abort_request(rm_server_t *s, rm_conn_t *c, int status);
void rm_conn_queue_output(rm_server_t *s, rm_conn_t *c, uint32_t chunk, uint32_t off,
                          uint32_t len);

/* spill.c: request bodies above --body-spill-size go to a file. */
/* Whether the body of the request on `c` should be in a file rather than the
 * region, now that `more` bytes are coming after `seen` (slices_full: the meta
 * chunk has no room for another slice). */
bool rm_spill_wanted(const rm_server_t *s, const rm_conn_t *c, uint64_t seen, uint64_t more,
                     bool slices_full);
/* Create the file and write the body slices gathered so far into it. False
 * (c->sink_status set) when the file cannot be made. */
bool rm_spill_begin(rm_server_t *s, rm_conn_t *c, const rm_slice_t *slices, uint32_t count);
/* Writes lag behind the network: stop parsing (and reading) until they land. */
bool rm_spill_throttled(const rm_server_t *s, const rm_conn_t *c);
/* Queue a write of one decoded body piece lying in chunk c->feed_chunk. */
bool rm_spill_piece(rm_server_t *s, rm_conn_t *c, const char *at, uint32_t len);
/* The body is complete: flush what is gathered. True when it is all on disk
 * already; otherwise the last write's completion finishes the request. */
bool rm_spill_complete(rm_server_t *s, rm_conn_t *c);
/* Write the file's path into the meta after the headers (RM_REQ_BODY_FILE). */
void rm_spill_finish_meta(rm_server_t *s, rm_conn_t *c, rm_req_meta_t *m);
void rm_spill_on_write(rm_server_t *s, uint32_t conn_idx, uint32_t chunk, int res);
/* The request ends: close and remove its file (a worker's open copy lives on). */
void rm_spill_drop(rm_server_t *s, rm_conn_t *c);

/* deadline.c: per-connection timeouts. */
void rm_deadline_init(rm_server_t *s);
/* Put `c` on the timer its state calls for. `progress`: bytes moved, which
 * restarts the body and write timers (never the header timer). */
void rm_deadline_update(rm_server_t *s, rm_conn_t *c, bool progress);
void rm_deadline_clear(rm_server_t *s, rm_conn_t *c);
/* Act on every deadline that passed: 408, close, or 503 for a request that
 * waited too long for a worker. */
void rm_deadline_expire(rm_server_t *s, uint64_t now);

/* dispatch.c: lanes. */
void rm_dispatch_request(rm_server_t *s, rm_conn_t *c);
void rm_dispatch_requeue(rm_server_t *s, rm_conn_t *c);
void rm_dispatch_pending(rm_server_t *s);
void rm_dispatch_unqueue_head(rm_server_t *s);
bool rm_dispatch_drain(rm_server_t *s); /* true if any completion was taken */
void rm_dispatch_lane_lost(rm_server_t *s, uint32_t lane);
/* The request on `c` passed --timeout: kill its worker; the client gets 504
 * once the worker is reaped. */
void rm_dispatch_timed_out(rm_server_t *s, rm_conn_t *c);
/* The request on `c` sits on its lane past its queue deadline: take it back
 * (wire.h's CAS) and answer 503. False when a thread took it first (or no
 * memory was left to record it). Its meta chunk stays held, and the request
 * counts as outstanding, until the worker pops it and releases them. */
bool rm_dispatch_try_cancel(rm_server_t *s, rm_conn_t *c);
/* The request on `c` waits on its worker's lane with no thread of that worker
 * free to take it, while another worker has one: take it back (the same CAS
 * as rm_dispatch_try_cancel) and hand it to that worker, keeping its queue
 * deadline. False when no worker is free, memory is short, or a thread of
 * its worker took it first. */
bool rm_dispatch_try_move(rm_server_t *s, rm_conn_t *c);
void rm_held_release_all(rm_server_t *s, rm_worker_t *w);

/* exchange.c: each request/response, counted and logged (exchange.h). */
#define RM_ACCESS_LOG_LINE_MAX (96u * 1024u) /* fits the longest line exchange.c makes */
void rm_exchange_begin(rm_server_t *s, rm_conn_t *c);            /* first byte parsed */
void rm_exchange_capture_head(rm_server_t *s, rm_conn_t *c);     /* meta just written */
void rm_exchange_capture_raw(rm_server_t *s, rm_conn_t *c);      /* refused before its head */
void rm_exchange_output(rm_conn_t *c, const unsigned char *data, uint32_t len); /* queued */
void rm_exchange_end(rm_server_t *s, rm_conn_t *c);              /* last byte queued */
void rm_exchange_discard(rm_conn_t *c);                          /* connection released */

/* metrics.c: the --metrics endpoint (/metrics, /healthz, /readyz). Without
 * --metrics every hook does nothing. */
int rm_metrics_start(rm_server_t *s); /* open the socket; 0 or -errno (logged) */
void rm_metrics_on_cqe(rm_server_t *s, enum rm_op op, uint32_t gen, uint32_t idx,
                       const struct io_uring_cqe *cqe);
void rm_metrics_tick(rm_server_t *s, uint64_t now); /* arm accepts, expire slow clients */
void rm_metrics_stop(rm_server_t *s);               /* after the ring is gone */

/* workers.c: processes. */
int rm_workers_start(rm_server_t *s);
int rm_worker_spawn(rm_server_t *s, uint32_t lane);
/* (Re)bind slot `lane`'s view of its lane, with its loop bell (-1 until made). */
void rm_worker_bind_lane(rm_server_t *s, uint32_t lane);
void rm_workers_on_ctl(rm_server_t *s, uint32_t lane, uint32_t gen, int res);
void rm_workers_reap(rm_server_t *s);
void rm_workers_maintain(rm_server_t *s, uint64_t now);
void rm_workers_reload(rm_server_t *s);
void rm_workers_scale(rm_server_t *s, int delta);
void rm_workers_stop_all(rm_server_t *s, bool fast);
bool rm_workers_all_exited(const rm_server_t *s);
void rm_workers_kill_all(rm_server_t *s);
/* Set the embedded pool's size (ctl scale). 0, or -ERANGE with the bounds in
 * `why`, or -ENOTSUP under --attach-only. */
int rm_workers_scale_to(rm_server_t *s, uint32_t target, char *why, size_t why_len);
/* Signal a worker, through its pidfd when attached (no pid reuse race). */
void rm_worker_signal(rm_worker_t *w, int sig);
void rm_worker_kill(rm_worker_t *w); /* SIGKILL */
/* Resident set size of a process in bytes, 0 when unknown. */
uint64_t rm_worker_rss_bytes(pid_t pid);
const char *rm_worker_state_name(const rm_worker_t *w);
/* Give a lane to an attaching process (control_socket.c): fills fds with the
 * region memfd, the doorbell, our end's peer of a new control socketpair and
 * the lane's loop bell (the caller sends them, then closes fds[2]). 0, -EBUSY
 * when no lane is free, or -errno. */
int rm_worker_attach(rm_server_t *s, const rm_control_peer_t *peer, uint32_t *lane,
                     int fds[RM_CTLP_ATTACH_FDS]);
/* Take back a lane whose descriptors never reached the attaching process. */
void rm_worker_attach_undo(rm_server_t *s, uint32_t lane);
/* An attached worker's pidfd became readable: it exited. */
void rm_workers_on_pidfd(rm_server_t *s, uint32_t lane, uint32_t gen, int res);

#endif
