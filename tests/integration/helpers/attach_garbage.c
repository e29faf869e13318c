/*
 * attach_garbage.c - a hostile attached worker for tests/integration/
 * test_attach.py: it attaches like `python -m ringmaster.worker`, says hello
 * and ready, then posts a completion the supervisor must refuse (a request it
 * was never given, pointing at a chunk it does not own, past the chunk's end)
 * and waits to be cut off.
 *
 *   attach_garbage CONTROL_PATH
 *
 * Exit status: 0 never (it expects SIGKILL), 1 when the attach failed, 2 for
 * bad usage, 3 when nobody cut it off within 30 s.
 */
#include "ringmaster/attach_client.h"
#include "ringmaster/control.h"
#include "ringmaster/doorbell.h"
#include "ringmaster/lane.h"
#include "ringmaster/region.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: attach_garbage CONTROL_PATH\n");
        return 2;
    }
    rm_ctlp_request_t req = {
        .version = RM_CTLP_VERSION, .cmd = RM_CTLP_ATTACH, .pid = (int32_t)getpid(), .threads = 1};
    snprintf(req.mode, sizeof(req.mode), "gil");
    snprintf(req.app, sizeof(req.app), "garbage");
    uint32_t lane_index;
    int fds[RM_CTLP_ATTACH_FDS];
    char why[512];
    if (rm_attach_request(argv[1], &req, &lane_index, fds, why, sizeof(why)) < 0) {
        fprintf(stderr, "attach_garbage: %s\n", why);
        return 1;
    }
    rm_region_t region;
    if (rm_region_attach(&region, fds[0], lane_index) < 0) {
        fprintf(stderr, "attach_garbage: cannot map the region\n");
        return 1;
    }
    rm_lane_t lane;
    rm_region_lane(&region, lane_index, &lane);
    rm_ctl_msg_t hello = {.type = RM_CTL_HELLO,
                          .version = RM_CTL_VERSION,
                          .pid = (int32_t)getpid(),
                          .lane = lane_index,
                          .gil_enabled = true};
    snprintf(hello.python, sizeof(hello.python), "none");
    snprintf(hello.mode, sizeof(hello.mode), "gil");
    rm_ctl_msg_t ready = {.type = RM_CTL_READY};
    if (rm_ctl_send(fds[2], &hello) < 0 || rm_ctl_send(fds[2], &ready) < 0) {
        fprintf(stderr, "attach_garbage: the control channel closed\n");
        return 1;
    }
    sleep(1); /* ready first, so that the garbage comes from a serving worker */
    rm_done_desc_t garbage = {.req_id = 0xdeadbeefcafeull,
                              .chunk = 1,
                              .off = 0xfffffff0u,
                              .len = 4096,
                              .flags = RM_DONE_LAST};
    rm_lane_push_done(&lane, &garbage);
    rm_doorbell_ring(&region.header->doorbell, fds[1]);
    printf("posted\n");
    fflush(stdout);
    sleep(30);
    return 3;
}
