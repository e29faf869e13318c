/*
 * test_control_proto.c - the control socket's schema: round trips of every
 * message, forward compatibility, and hostile frames.
 */
#include "ringmaster/control.h"
#include "ringmaster/control_proto.h"

#include "mp_body.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static rm_ctlp_request_t request_round_trip(const rm_ctlp_request_t *in)
{
    char *frame = NULL;
    ssize_t n = rm_ctlp_encode_request(in, &frame);
    cr_assert_gt(n, RM_CTL_PREFIX, "encode %s: %zd", rm_ctlp_cmd_name(in->cmd), n);
    rm_ctlp_request_t out;
    memset(&out, 0x5A, sizeof(out));
    /* Every prefix of the frame is incomplete, not an error. */
    for (ssize_t k = 0; k < n; k++)
        cr_assert_eq(rm_ctlp_decode_request(frame, (size_t)k, &out), 0, "prefix %zd of %zd", k, n);
    cr_assert_eq(rm_ctlp_decode_request(frame, (size_t)n, &out), n);
    free(frame);
    return out;
}

Test(control_proto, every_command_round_trips)
{
    for (int c = RM_CTLP_STATS; c <= RM_CTLP_ATTACH; c++) {
        rm_ctlp_request_t in = {.version = RM_CTLP_VERSION, .cmd = (rm_ctlp_cmd_t)c};
        rm_ctlp_request_t out = request_round_trip(&in);
        cr_assert_eq(out.cmd, c, "%s", rm_ctlp_cmd_name(c));
        cr_assert_eq(out.version, RM_CTLP_VERSION);
        cr_assert_eq(rm_ctlp_cmd_from(rm_ctlp_cmd_name(c)), c);
    }
}

Test(control_proto, scale_absolute_and_relative)
{
    rm_ctlp_request_t in = {.version = 1, .cmd = RM_CTLP_SCALE, .scale = 3};
    rm_ctlp_request_t out = request_round_trip(&in);
    cr_assert_eq(out.scale, 3);
    cr_assert(!out.relative);
    in = (rm_ctlp_request_t){.version = 1, .cmd = RM_CTLP_SCALE, .scale = -1, .relative = true};
    out = request_round_trip(&in);
    cr_assert_eq(out.scale, -1);
    cr_assert(out.relative);
}

Test(control_proto, attach_fields_round_trip)
{
    rm_ctlp_request_t in = {.version = 1, .cmd = RM_CTLP_ATTACH, .pid = 4242, .threads = 4};
    strcpy(in.python, "3.13.0");
    strcpy(in.mode, "gil");
    strcpy(in.app, "pkg.mod:application");
    rm_ctlp_request_t out = request_round_trip(&in);
    cr_assert_eq(out.pid, 4242);
    cr_assert_eq(out.threads, 4);
    cr_assert_str_eq(out.python, "3.13.0");
    cr_assert_str_eq(out.mode, "gil");
    cr_assert_str_eq(out.app, "pkg.mod:application");
}

Test(control_proto, response_with_stats_and_workers_round_trips)
{
    rm_ctlp_worker_t ws[3] = {
        {.lane = 0,
         .pid = 10,
         .attached = false,
         .requests = 1ull << 40,
         .in_flight = 2,
         .rss_bytes = 12345678,
         .uptime_ms = 99},
        {.lane = 7, .pid = 11, .attached = true, .requests = 5},
        {.lane = 1023, .pid = INT32_MAX},
    };
    strcpy(ws[0].state, "ready");
    strcpy(ws[0].mode, "subinterpreters");
    strcpy(ws[0].python, "3.12.1");
    strcpy(ws[1].state, "starting");
    rm_ctlp_response_t in = {.version = 1,
                             .cmd = RM_CTLP_WORKERS,
                             .ok = true,
                             .has_workers = true,
                             .nworkers = 3,
                             .workers = ws,
                             .has_stats = true};
    in.stats = (rm_ctlp_stats_t){.pid = 77,
                                 .uptime_ms = 5000,
                                 .workers_target = 3,
                                 .workers_ready = 2,
                                 .workers_attached = 1,
                                 .connections = 9,
                                 .queued = 4,
                                 .in_flight = 2,
                                 .requests = UINT64_MAX,
                                 .chunks_used = 17,
                                 .chunks_total = 4096,
                                 .reloads = 2,
                                 .stopping = true,
                                 .attach_only = true};
    strcpy(in.stats.version, "0.1.0");
    char *frame = NULL;
    ssize_t n = rm_ctlp_encode_response(&in, &frame);
    cr_assert_gt(n, 0);
    rm_ctlp_response_t out;
    cr_assert_eq(rm_ctlp_decode_response(frame, (size_t)n, &out), n);
    free(frame);
    cr_assert(out.ok);
    cr_assert_eq(out.cmd, RM_CTLP_WORKERS);
    cr_assert(out.has_stats && out.has_workers);
    cr_assert_eq(memcmp(&out.stats, &in.stats, sizeof(in.stats)), 0);
    cr_assert_eq(out.nworkers, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(memcmp(&out.workers[i], &ws[i], sizeof(ws[i])), 0, "worker %d", i);
    rm_ctlp_response_deinit(&out);
}

Test(control_proto, error_scale_and_attach_responses)
{
    rm_ctlp_response_t in = {.version = 1, .cmd = RM_CTLP_SCALE, .ok = false};
    strcpy(in.error, "cannot scale to 0 worker(s)");
    char *frame = NULL;
    ssize_t n = rm_ctlp_encode_response(&in, &frame);
    rm_ctlp_response_t out;
    cr_assert_eq(rm_ctlp_decode_response(frame, (size_t)n, &out), n);
    free(frame);
    cr_assert(!out.ok);
    cr_assert_str_eq(out.error, "cannot scale to 0 worker(s)");
    rm_ctlp_response_deinit(&out);

    in = (rm_ctlp_response_t){.version = 1, .cmd = RM_CTLP_SCALE, .ok = true, .target = 5};
    n = rm_ctlp_encode_response(&in, &frame);
    cr_assert_eq(rm_ctlp_decode_response(frame, (size_t)n, &out), n);
    free(frame);
    cr_assert_eq(out.target, 5);

    in = (rm_ctlp_response_t){
        .version = 1, .cmd = RM_CTLP_ATTACH, .ok = true, .has_lane = true, .lane = 12};
    n = rm_ctlp_encode_response(&in, &frame);
    cr_assert_eq(rm_ctlp_decode_response(frame, (size_t)n, &out), n);
    free(frame);
    cr_assert(out.has_lane);
    cr_assert_eq(out.lane, 12);
}

/* ---- frames built by hand --------------------------------------------------- */

/* The framed body in a malloc'd buffer; the body is released. */
static char *framed(body_t *b, size_t *len)
{
    char *out = malloc(b->sb.size + RM_CTL_PREFIX);
    rm_ctl_frame_prefix(out, b->sb.size);
    memcpy(out + RM_CTL_PREFIX, b->sb.data, b->sb.size);
    *len = b->sb.size + RM_CTL_PREFIX;
    msgpack_sbuffer_destroy(&b->sb);
    return out;
}

Test(control_proto, unknown_keys_and_commands_are_tolerated)
{
    body_t b;
    body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    put_str(&b, "v");
    msgpack_pack_uint32(&b.pk, 1);
    put_str(&b, "cmd");
    put_str(&b, "frobnicate");
    put_str(&b, "future_field");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_true(&b.pk);
    size_t len;
    char *f = framed(&b, &len);
    rm_ctlp_request_t req;
    cr_assert_eq(rm_ctlp_decode_request(f, len, &req), (ssize_t)len);
    cr_assert_eq(req.cmd, RM_CTLP_NONE);
    free(f);
}

Test(control_proto, wrong_types_and_missing_keys_are_refused)
{
    const char *cases[] = {"no_v", "no_cmd", "cmd_int", "n_str", "not_a_map"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        body_t b;
        body_init(&b);
        if (strcmp(cases[i], "not_a_map") == 0) {
            msgpack_pack_array(&b.pk, 1);
            msgpack_pack_uint32(&b.pk, 1);
        } else {
            bool v = strcmp(cases[i], "no_v") != 0, cmd = strcmp(cases[i], "no_cmd") != 0;
            bool n = strcmp(cases[i], "n_str") == 0;
            msgpack_pack_map(&b.pk, v + cmd + n);
            if (v) {
                put_str(&b, "v");
                msgpack_pack_uint32(&b.pk, 1);
            }
            if (cmd) {
                put_str(&b, "cmd");
                if (strcmp(cases[i], "cmd_int") == 0)
                    msgpack_pack_uint32(&b.pk, 3);
                else
                    put_str(&b, "scale");
            }
            if (n) {
                put_str(&b, "n");
                put_str(&b, "three");
            }
        }
        size_t len;
        char *f = framed(&b, &len);
        rm_ctlp_request_t req;
        cr_assert_eq(rm_ctlp_decode_request(f, len, &req), -EBADMSG, "%s", cases[i]);
        free(f);
    }
}

Test(control_proto, hostile_sizes_are_refused_before_allocation)
{
    /* A workers array claiming 2^32-1 entries in a 10-byte body. */
    unsigned char body[] = {0x81, 0xa7, 'w',  'o',  'r',  'k',  'e',
                            'r',  's',  0xdd, 0xff, 0xff, 0xff, 0xff};
    char f[64];
    rm_ctl_frame_prefix(f, sizeof(body));
    memcpy(f + RM_CTL_PREFIX, body, sizeof(body));
    rm_ctlp_response_t resp;
    cr_assert_eq(rm_ctlp_decode_response(f, RM_CTL_PREFIX + sizeof(body), &resp), -EBADMSG);
    cr_assert_null(resp.workers);

    /* A length prefix beyond the limit is refused before its bytes arrive. */
    rm_ctl_frame_prefix(f, RM_CTLP_MAX_FRAME + 1);
    cr_assert_eq(rm_ctlp_decode_response(f, RM_CTL_PREFIX, &resp), -EBADMSG);
    rm_ctl_frame_prefix(f, 0);
    cr_assert_eq(rm_ctlp_decode_request(f, RM_CTL_PREFIX, &(rm_ctlp_request_t){0}), -EBADMSG);
}

Test(control_proto, too_many_workers_is_refused)
{
    rm_ctlp_worker_t *ws = calloc(RM_CTLP_MAX_WORKERS + 1, sizeof(*ws));
    rm_ctlp_response_t in = {.version = 1,
                             .cmd = RM_CTLP_WORKERS,
                             .ok = true,
                             .has_workers = true,
                             .nworkers = RM_CTLP_MAX_WORKERS + 1,
                             .workers = ws};
    char *frame = NULL;
    cr_assert_eq(rm_ctlp_encode_response(&in, &frame), -EMSGSIZE);
    free(ws);
}

Test(control_proto, requests_without_a_command_do_not_encode)
{
    char *frame = NULL;
    rm_ctlp_request_t in = {.version = 1, .cmd = RM_CTLP_NONE};
    cr_assert_eq(rm_ctlp_encode_request(&in, &frame), -EINVAL);
}
