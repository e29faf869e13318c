/*
 * region.c - create, seal, map and attach the shared-memory region.
 *
 * Kernel features: memfd_create with MFD_ALLOW_SEALING (3.17), F_ADD_SEALS.
 *
 * The creator and every attacher compute the layout with the same function
 * (layout_of) from the same four numbers, so an attacher never takes an
 * offset from shared memory without recomputing it first.
 */
#include "ringmaster/region.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define MAX_LANES 1024u
#define MAX_LANE_CAPACITY 65536u
#define MAX_CHUNK_SIZE (1u << 20)
#define MAX_CHUNK_COUNT (1u << 22)
/* Every piece is bounded above; this caps the sum (chunks dominate) at a size
 * a server has any business asking for. */
#define MAX_REGION_SIZE (64ULL << 30)
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

static_assert(sizeof(rm_region_header_t) <= PAGE, "region header fits a page");
static_assert(offsetof(rm_region_header_t, doorbell) % RM_CACHELINE == 0, "doorbell line");

typedef struct layout {
    uint64_t stats_off, lanes_off, lane_stride, pool_off, chunks_off, size;
} layout_t;

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* conf must have passed rm_region_conf_check: with its bounds nothing here
 * overflows 64 bits. */
static void layout_of(const rm_region_conf_t *conf, layout_t *out)
{
    out->stats_off = align_up(sizeof(rm_region_header_t), RM_CACHELINE);
    out->lanes_off = align_up(out->stats_off + sizeof(rm_supervisor_stats_t), RM_CACHELINE) +
                     (uint64_t)conf->lane_count * sizeof(rm_lane_stats_t);
    out->lane_stride = rm_lane_shared_size(conf->lane_capacity);
    out->pool_off = out->lanes_off + (uint64_t)conf->lane_count * out->lane_stride;
    out->chunks_off = align_up(out->pool_off + rm_chunk_pool_shared_size(conf->chunk_count), PAGE);
    out->size = out->chunks_off + (uint64_t)conf->chunk_count * conf->chunk_size;
}

int rm_region_conf_check(const rm_region_conf_t *conf, const char **why)
{
    const char *reason = NULL;
    uint32_t cap = conf->lane_capacity;

    if (conf->lane_count < 1 || conf->lane_count > MAX_LANES)
        reason = "lane count must be between 1 and 1024";
    else if (cap < 2 || cap > MAX_LANE_CAPACITY || (cap & (cap - 1)) != 0)
        reason = "lane capacity must be a power of two between 2 and 65536";
    else if (conf->chunk_size == 0 || conf->chunk_size % PAGE != 0 ||
             conf->chunk_size > MAX_CHUNK_SIZE)
        reason = "chunk size must be a non-zero multiple of 4096 and at most 1 MiB";
    else if (conf->chunk_count < 1 || conf->chunk_count > MAX_CHUNK_COUNT)
        reason = "chunk count must be between 1 and 4194304";
    else {
        layout_t l;
        layout_of(conf, &l);
        if (l.size > MAX_REGION_SIZE)
            reason = "region would exceed 64 GiB (chunk size x chunk count too large)";
    }

    if (why)
        *why = reason;
    return reason ? -EINVAL : 0;
}

static void region_clear(rm_region_t *region)
{
    memset(region, 0, sizeof(*region));
    region->fd = -1;
}

/* Fill the local view from a checked conf and layout; the pool handle is
 * bound here too, so creator and attacher end up identical. */
static void region_fill(rm_region_t *region, int fd, void *base, const rm_region_conf_t *conf,
                        const layout_t *l, uint32_t pool_hint)
{
    region->fd = fd;
    region->base = base;
    region->size = (size_t)l->size;
    region->conf = *conf;
    region->lanes_off = l->lanes_off;
    region->lane_stride = l->lane_stride;
    region->pool_off = l->pool_off;
    region->chunks_off = l->chunks_off;
    region->stats_off = l->stats_off;
    region->header = base;
    region->stats = (rm_supervisor_stats_t *)(region->base + l->stats_off);
    region->lane_stats =
        (rm_lane_stats_t *)(region->base +
                            align_up(l->stats_off + sizeof(rm_supervisor_stats_t), RM_CACHELINE));
    rm_chunk_pool_bind(&region->pool, region->base + l->pool_off, region->base + l->chunks_off,
                       conf->chunk_count, conf->chunk_size, pool_hint);
}

int rm_region_create(rm_region_t *region, const rm_region_conf_t *conf)
{
    region_clear(region);
    int r = rm_region_conf_check(conf, NULL);
    if (r < 0)
        return r;
    layout_t l;
    layout_of(conf, &l);

    int fd = memfd_create("ringmaster", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)l.size) < 0)
        goto fail_fd;
    /* No party may resize the file under another's mapping (SIGBUS), nor
     * lift these seals again. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        goto fail_fd;
    unsigned char *base = mmap(NULL, (size_t)l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        goto fail_fd;

    /* A fresh memfd reads as zeroes, so only non-zero state is written. */
    rm_region_header_t *h = (rm_region_header_t *)base;
    h->layout_version = RM_REGION_LAYOUT_VERSION;
    h->creator_pid = (int32_t)getpid();
    h->size = l.size;
    h->conf = *conf;
    h->lanes_off = l.lanes_off;
    h->lane_stride = l.lane_stride;
    h->pool_off = l.pool_off;
    h->chunks_off = l.chunks_off;
    h->stats_off = l.stats_off;
    atomic_store_explicit(&h->doorbell.sleeping, 0, memory_order_relaxed);
    atomic_store_explicit(&h->doorbell.rings, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < conf->lane_count; i++)
        rm_lane_shared_reset(base + l.lanes_off + i * l.lane_stride, conf->lane_capacity);
    rm_chunk_pool_shared_init(base + l.pool_off, conf->chunk_count);
    /* The magic last: a header with a magic is a complete one. */
    h->magic = RM_REGION_MAGIC;

    region_fill(region, fd, base, conf, &l, 0);
    return 0;

fail_fd:
    r = -errno;
    close(fd);
    return r;
}

int rm_region_attach(rm_region_t *region, int fd, uint32_t pool_hint)
{
    region_clear(region);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)sizeof(rm_region_header_t))
        return -EPROTO; /* too small to hold our header: not a region */
    size_t size = (size_t)st.st_size;

    unsigned char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;

    int r;
    /* Copy the header once, so that checks and use see the same values even
     * if another party writes the shared copy meanwhile. */
    rm_region_header_t h;
    memcpy(&h, base, sizeof(h));
    if (h.magic != RM_REGION_MAGIC || h.layout_version != RM_REGION_LAYOUT_VERSION) {
        r = -EPROTO;
        goto fail_map;
    }
    if (rm_region_conf_check(&h.conf, NULL) < 0) {
        r = -EINVAL;
        goto fail_map;
    }
    layout_t l;
    layout_of(&h.conf, &l);
    if (l.lanes_off != h.lanes_off || l.lane_stride != h.lane_stride || l.pool_off != h.pool_off ||
        l.chunks_off != h.chunks_off || l.stats_off != h.stats_off || l.size != h.size ||
        l.size != (uint64_t)st.st_size) {
        r = -EINVAL;
        goto fail_map;
    }
    /* Unsealed, the file could shrink under our mapping and fault us. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        r = -errno;
        goto fail_map;
    }
    if ((seals & REQUIRED_SEALS) != REQUIRED_SEALS) {
        r = -EINVAL;
        goto fail_map;
    }

    region_fill(region, fd, base, &h.conf, &l, pool_hint);
    return 0;

fail_map:
    munmap(base, size);
    return r;
}

void rm_region_detach(rm_region_t *region)
{
    /* A live region always has a mapping; a zeroed one (fd 0!) does not. */
    if (region->base) {
        munmap(region->base, region->size);
        close(region->fd);
    }
    region_clear(region);
}

static unsigned char *lane_mem(const rm_region_t *region, uint32_t index)
{
    return region->base + region->lanes_off + (uint64_t)index * region->lane_stride;
}

void rm_region_lane(const rm_region_t *region, uint32_t index, rm_lane_t *lane)
{
    assert(index < region->conf.lane_count);
    rm_lane_bind(lane, lane_mem(region, index), region->conf.lane_capacity, index);
}

void rm_region_lane_reset(rm_region_t *region, uint32_t index)
{
    assert(index < region->conf.lane_count);
    rm_lane_shared_reset(lane_mem(region, index), region->conf.lane_capacity);
    rm_lane_stats_t *st = &region->lane_stats[index];
    atomic_store_explicit(&st->requests, 0, memory_order_relaxed);
    atomic_store_explicit(&st->exceptions, 0, memory_order_relaxed);
    atomic_store_explicit(&st->in_flight, 0, memory_order_relaxed);
}
