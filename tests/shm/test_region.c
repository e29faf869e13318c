/*
 * test_region.c - creating, sealing and attaching the shared region.
 */
#include "ringmaster/region.h"

#include <criterion/criterion.h>

#include "peers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const rm_region_conf_t small = {
    .lane_count = 3, .lane_capacity = 16, .chunk_size = 4096, .chunk_count = 100};

static void create_small(rm_region_t *r)
{
    int rc = rm_region_create(r, &small);
    cr_assert_eq(rc, 0, "rm_region_create: %s", strerror(-rc));
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

Test(region, create_writes_header_and_geometry)
{
    rm_region_t r;
    create_small(&r);
    const rm_region_header_t *h = r.header;

    cr_assert_geq(r.fd, 0);
    cr_assert_eq((void *)h, (void *)r.base);
    cr_assert_eq(h->magic, RM_REGION_MAGIC);
    cr_assert_eq(h->layout_version, RM_REGION_LAYOUT_VERSION);
    cr_assert_eq(h->creator_pid, getpid());
    cr_assert_eq(h->size, r.size);
    cr_assert_eq(memcmp(&h->conf, &small, sizeof(small)), 0);
    cr_assert_eq(memcmp(&r.conf, &small, sizeof(small)), 0);

    cr_assert_geq(r.lanes_off, sizeof(rm_region_header_t));
    cr_assert_eq(r.lanes_off % RM_CACHELINE, 0);
    cr_assert_eq(r.lane_stride, rm_lane_shared_size(small.lane_capacity));
    cr_assert_eq(r.pool_off, r.lanes_off + small.lane_count * r.lane_stride);
    cr_assert_geq(r.chunks_off, r.pool_off + rm_chunk_pool_shared_size(small.chunk_count));
    cr_assert_eq(r.chunks_off % 4096, 0);
    cr_assert_eq(r.size, r.chunks_off + (size_t)small.chunk_count * small.chunk_size);
    cr_assert_eq(h->lanes_off, r.lanes_off);
    cr_assert_eq(h->chunks_off, r.chunks_off);

    struct stat st;
    cr_assert_eq(fstat(r.fd, &st), 0);
    cr_assert_eq((size_t)st.st_size, r.size);
    cr_assert_eq(r.pool.count, small.chunk_count);
    cr_assert_eq(r.pool.chunk_size, small.chunk_size);
    cr_assert_eq(rm_chunk_pool_in_use(&r.pool), 0);
    cr_assert_eq(r.pool.chunks, r.base + r.chunks_off);

    for (uint32_t i = 0; i < small.lane_count; i++) {
        rm_lane_t lane;
        rm_region_lane(&r, i, &lane);
        cr_assert_eq((unsigned char *)lane.shared, r.base + r.lanes_off + i * r.lane_stride);
        cr_assert_eq(atomic_load(&lane.shared->state), RM_LANE_IDLE);
        cr_assert_eq(atomic_load(&lane.shared->generation), 1);
        cr_assert_eq(rm_ring_count(&lane.req), 0);
        cr_assert_eq(rm_ring_count(&lane.done), 0);
    }
    rm_region_detach(&r);
}

Test(region, memfd_is_sealed)
{
    rm_region_t r;
    create_small(&r);
    int seals = fcntl(r.fd, F_GET_SEALS);
    cr_assert_geq(seals, 0);
    cr_assert_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, "seals %#x", seals);

    cr_assert_eq(ftruncate(r.fd, (off_t)r.size / 2), -1);
    cr_assert_eq(errno, EPERM, "shrink: %s", strerror(errno));
    cr_assert_eq(ftruncate(r.fd, (off_t)r.size * 2), -1);
    cr_assert_eq(errno, EPERM, "grow: %s", strerror(errno));
    cr_assert_eq(fcntl(r.fd, F_ADD_SEALS, F_SEAL_WRITE), -1, "seals are sealed");
    cr_assert_eq(errno, EPERM);
    rm_region_detach(&r);
}

Test(region, conf_check_rejects_bad_values_with_a_reason)
{
    struct {
        rm_region_conf_t conf;
        const char *word; /* the reason must name what is wrong */
    } bad[] = {
        {{0, 16, 4096, 10}, "lane count"},       {{1025, 16, 4096, 10}, "lane count"},
        {{1, 0, 4096, 10}, "capacity"},          {{1, 1, 4096, 10}, "capacity"},
        {{1, 24, 4096, 10}, "capacity"},         {{1, 131072, 4096, 10}, "capacity"},
        {{1, 16, 0, 10}, "chunk size"},          {{1, 16, 1000, 10}, "chunk size"},
        {{1, 16, 4096 + 512, 10}, "chunk size"}, {{1, 16, 2 << 20, 10}, "chunk size"},
        {{1, 16, 4096, 0}, "chunk count"},       {{1, 16, 4096, (1u << 22) + 1}, "chunk count"},
        {{1, 16, 1 << 20, 1 << 17}, "64 GiB"}, /* 128 GiB of chunks */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        cr_expect_eq(rm_region_conf_check(&bad[i].conf, &why), -EINVAL, "case %zu accepted", i);
        cr_expect_not_null(why, "case %zu: no reason", i);
        if (why)
            cr_expect_not_null(strstr(why, bad[i].word), "case %zu: reason '%s' lacks '%s'", i, why,
                               bad[i].word);
        rm_region_t r;
        cr_expect_eq(rm_region_create(&r, &bad[i].conf), -EINVAL);
        cr_expect_eq(r.fd, -1, "failed create leaves no fd");
        cr_expect_null(r.base, "failed create leaves no mapping");
    }

    const char *why = "untouched";
    cr_assert_eq(rm_region_conf_check(&small, &why), 0);
    cr_assert_null(why, "a good conf has no reason");
    rm_region_conf_t edge = {1024, 65536, 1 << 20, 1};
    cr_assert_eq(rm_region_conf_check(&edge, NULL), 0);
    edge = (rm_region_conf_t){1, 2, 4096, 1u << 22};
    cr_assert_eq(rm_region_conf_check(&edge, NULL), 0);
}

Test(region, detach_is_idempotent_and_safe_on_a_zeroed_region)
{
    rm_region_t r;
    create_small(&r);
    int fd = r.fd;
    rm_region_detach(&r);
    cr_assert(!fd_open(fd), "detach closes the memfd");
    cr_assert_eq(r.fd, -1);
    cr_assert_null(r.base);
    cr_assert_eq(r.size, 0);
    rm_region_detach(&r);
    cr_assert_eq(r.fd, -1);

    /* A zeroed region says fd 0: detach must not close it. */
    if (!fd_open(0))
        cr_assert_eq(open("/dev/null", O_RDONLY), 0);
    rm_region_t zero;
    memset(&zero, 0, sizeof(zero));
    rm_region_detach(&zero);
    cr_assert(fd_open(0), "detach of a zeroed region closed fd 0");
    cr_assert_eq(zero.fd, -1);
}

/* Child half of the cross-process test: drop the inherited mapping, attach
 * through a copy of the fd, and use lane 1 and the pool at the new address. */
static int child_attach_and_use(const rm_region_t *parent)
{
    int fd = dup(parent->fd);
    if (fd < 0)
        return 10;
    munmap(parent->base, parent->size);

    rm_region_t r;
    if (rm_region_attach(&r, fd, 1) != 0)
        return 11;
    if (r.size != parent->size || r.chunks_off != parent->chunks_off ||
        r.lanes_off != parent->lanes_off || r.lane_stride != parent->lane_stride ||
        memcmp(&r.conf, &parent->conf, sizeof(r.conf)) != 0 || r.fd != fd)
        return 12;
    if (r.header->creator_pid != getppid())
        return 13;

    uint32_t chunk = rm_chunk_pool_alloc(&r.pool, RM_OWNER_LANE(1));
    if (chunk == RM_CHUNK_NONE)
        return 14;
    strcpy((char *)rm_chunk_pool_ptr(&r.pool, chunk), "from the child");

    rm_lane_t lane;
    rm_region_lane(&r, 1, &lane);
    rm_done_desc_t done = {
        .req_id = 77, .chunk = chunk, .off = 0, .len = 14, .flags = RM_DONE_LAST};
    if (rm_lane_push_done(&lane, &done) != 0)
        return 15;
    rm_req_desc_t req;
    if (rm_lane_pop_request(&lane, &req, 100, 5000) != 0 || req.req_id != 1234)
        return 16;
    rm_region_detach(&r);
    return fcntl(fd, F_GETFD) < 0 ? 0 : 17;
}

Test(region, attach_in_a_child_shares_lanes_and_chunks, .timeout = 20)
{
    rm_region_t r;
    create_small(&r);
    rm_lane_t lane;
    rm_region_lane(&r, 1, &lane);
    rm_req_desc_t req = {.req_id = 1234, .meta_chunk = 5, .meta_len = 96};
    cr_assert_eq(rm_lane_push_request(&lane, &req), 0);

    pid_t pid = fork_peer();
    if (pid == 0)
        _exit(child_attach_and_use(&r));
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child died: %#x", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d", WEXITSTATUS(status));

    rm_done_desc_t done;
    cr_assert_eq(rm_lane_try_pop_done(&lane, &done), 0);
    cr_assert_eq(done.req_id, 77);
    cr_assert_eq(rm_chunk_pool_owner(&r.pool, done.chunk), RM_OWNER_LANE(1));
    cr_assert_str_eq((char *)rm_chunk_pool_ptr(&r.pool, done.chunk), "from the child");
    cr_assert_eq(rm_ring_count(&lane.req), 0, "the child took the request");
    cr_assert(fd_open(r.fd), "the child's detach must not affect our fd");
    rm_region_detach(&r);
}

/* A memfd holding a copy of a real region's header (and its size), which a
 * test then spoils. `seal` adds the seals a real region has. */
static int fake_region(const rm_region_t *real, void (*spoil)(rm_region_header_t *), off_t size,
                       bool seal)
{
    int fd = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, size), 0);
    rm_region_header_t h;
    memcpy(&h, real->header, sizeof(h));
    if (spoil)
        spoil(&h);
    size_t n = (size_t)size < sizeof(h) ? (size_t)size : sizeof(h); /* never grow it */
    cr_assert_eq(pwrite(fd, &h, n, 0), (ssize_t)n);
    if (seal)
        cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    return fd;
}

static void spoil_magic(rm_region_header_t *h)
{
    h->magic ^= 1;
}
static void spoil_version(rm_region_header_t *h)
{
    h->layout_version = RM_REGION_LAYOUT_VERSION + 1;
}
static void spoil_lanes_off(rm_region_header_t *h)
{
    h->lanes_off += RM_CACHELINE;
}
static void spoil_chunks_off(rm_region_header_t *h)
{
    h->chunks_off += 4096;
}
static void spoil_conf(rm_region_header_t *h)
{
    h->conf.lane_count++; /* offsets no longer follow from the conf */
}
static void spoil_conf_invalid(rm_region_header_t *h)
{
    h->conf.lane_capacity = 3;
}

static void expect_attach_fails(int fd, int want, const char *what)
{
    rm_region_t r;
    int rc = rm_region_attach(&r, fd, 0);
    cr_expect_eq(rc, want, "%s: attach returned %d (%s), expected %d", what, rc, strerror(-rc),
                 want);
    cr_expect(fd_open(fd), "%s: a failed attach must leave the fd to the caller", what);
    cr_expect_eq(r.fd, -1);
    cr_expect_null(r.base);
    close(fd);
}

Test(region, attach_refuses_foreign_or_inconsistent_files)
{
    rm_region_t real;
    create_small(&real);
    off_t size = (off_t)real.size;

    expect_attach_fails(fake_region(&real, spoil_magic, size, true), -EPROTO, "wrong magic");
    expect_attach_fails(fake_region(&real, spoil_version, size, true), -EPROTO, "wrong version");
    expect_attach_fails(fake_region(&real, NULL, 16, false), -EPROTO, "shorter than a header");
    expect_attach_fails(fake_region(&real, spoil_lanes_off, size, true), -EINVAL, "lanes_off");
    expect_attach_fails(fake_region(&real, spoil_chunks_off, size, true), -EINVAL, "chunks_off");
    expect_attach_fails(fake_region(&real, spoil_conf, size, true), -EINVAL, "conf");
    expect_attach_fails(fake_region(&real, spoil_conf_invalid, size, true), -EINVAL,
                        "impossible conf");
    expect_attach_fails(fake_region(&real, NULL, size + 4096, true), -EINVAL, "file size");
    expect_attach_fails(fake_region(&real, NULL, size, false), -EINVAL, "unsealed");

    /* The control: the same copy, untouched and sealed, attaches. */
    int fd = fake_region(&real, NULL, size, true);
    rm_region_t r;
    cr_assert_eq(rm_region_attach(&r, fd, 0), 0);
    cr_assert_eq(r.fd, fd);
    rm_region_detach(&r);

    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    cr_expect_lt(rm_region_attach(&r, pipefd[0], 0), 0, "a pipe is no region");
    close(pipefd[0]);
    close(pipefd[1]);
    rm_region_detach(&real);
}

Test(region, lane_reset_empties_and_bumps_generation)
{
    rm_region_t r;
    create_small(&r);
    rm_lane_t lane;
    rm_region_lane(&r, 2, &lane);
    rm_req_desc_t req = {.req_id = 1};
    rm_done_desc_t done = {.req_id = 2};
    cr_assert_eq(rm_lane_push_request(&lane, &req), 0);
    cr_assert_eq(rm_lane_push_done(&lane, &done), 0);
    atomic_store(&lane.shared->state, RM_LANE_ACTIVE);
    atomic_store(&lane.shared->worker_pid, 4242);
    uint32_t gen = atomic_load(&lane.shared->generation);

    rm_region_lane_reset(&r, 2);
    cr_assert_eq(rm_ring_count(&lane.req), 0);
    cr_assert_eq(rm_ring_count(&lane.done), 0);
    cr_assert_eq(rm_lane_try_pop_done(&lane, &done), -EAGAIN);
    cr_assert_eq(atomic_load(&lane.shared->state), RM_LANE_IDLE);
    cr_assert_eq(atomic_load(&lane.shared->worker_pid), 0);
    cr_assert_eq(atomic_load(&lane.shared->generation), gen + 1);

    /* The other lanes are untouched. */
    rm_lane_t other;
    rm_region_lane(&r, 1, &other);
    cr_assert_eq(atomic_load(&other.shared->generation), 1);
    rm_region_detach(&r);
}
