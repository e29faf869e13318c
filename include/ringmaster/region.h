/*
 * region.h - the shared-memory region every party maps.
 *
 * One memfd, sized once and sealed (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL), so
 * that no party can make the mapping of another fault. Layout, all offsets from
 * the region's base, every piece RM_CACHELINE aligned, the chunks page aligned:
 *
 *   +--------------------+ 0
 *   | rm_region_header_t |  magic, layout version, creator pid, geometry
 *   | rm_doorbell_shared |  (inside the header)
 *   +--------------------+ stats_off
 *   | supervisor stats   |  rm_supervisor_stats_t (stats.h)
 *   | lane stats 0..n-1  |  rm_lane_stats_t, one line per lane
 *   +--------------------+ lanes_off
 *   | lane 0             |  rm_lane_shared_t + request ring + completion ring
 *   | ...                |  lane_stride bytes each
 *   +--------------------+ pool_off
 *   | chunk pool         |  in-use bitmap, one owner word per chunk
 *   +--------------------+ chunks_off (page aligned)
 *   | chunk 0 .. n-1     |  chunk_size bytes each
 *   +--------------------+ size
 *
 * The header is written by the creator and only read by attachers, which
 * refuse a magic, version or geometry they do not understand. The creator never
 * re-reads geometry from shared memory: it keeps its own copy (rm_region_t).
 */
#ifndef RINGMASTER_REGION_H
#define RINGMASTER_REGION_H

#include "ringmaster/chunk_pool.h"
#include "ringmaster/doorbell.h"
#include "ringmaster/lane.h"
#include "ringmaster/stats.h"

#include <stddef.h>
#include <stdint.h>

#define RM_REGION_MAGIC 0x31474552474e4d52ULL /* "RMNGREG1" little-endian */
/* 3: the lane header has a loop bell line; 4: overload and chunk-wait
 * counters, and the request meta's run state (wire.h) */
#define RM_REGION_LAYOUT_VERSION 4u

typedef struct rm_region_conf {
    uint32_t lane_count;    /* workers that can be attached at once */
    uint32_t lane_capacity; /* cells per ring, power of two */
    uint32_t chunk_size;    /* bytes per chunk, multiple of 4096, <= 1 MiB */
    uint32_t chunk_count;   /* chunks in the pool */
} rm_region_conf_t;

typedef struct rm_region_header {
    uint64_t magic;
    uint32_t layout_version;
    int32_t creator_pid;
    uint64_t size; /* bytes mapped */
    rm_region_conf_t conf;
    uint64_t lanes_off;
    uint64_t lane_stride;
    uint64_t pool_off;
    uint64_t chunks_off;
    uint64_t stats_off;
    rm_doorbell_shared_t doorbell; /* wakes the supervisor */
} rm_region_header_t;

static_assert(offsetof(rm_region_header_t, conf) == 24, "region header layout");
static_assert(offsetof(rm_region_header_t, doorbell) == 128, "doorbell on its own line");

/* A process-local view of a mapped region. */
typedef struct rm_region {
    int fd;                      /* owned: the memfd */
    unsigned char *base;         /* owned mapping */
    size_t size;
    rm_region_conf_t conf;       /* local copy of the geometry */
    uint64_t lanes_off, lane_stride, pool_off, chunks_off, stats_off;
    rm_region_header_t *header;  /* == base */
    rm_supervisor_stats_t *stats; /* in the region: see stats.h for who writes what */
    rm_lane_stats_t *lane_stats;  /* conf.lane_count of them */
    rm_chunk_pool_t pool;        /* local handle on the region's pool */
} rm_region_t;

/* Check a configuration; fills `why` (if not NULL) with a readable reason.
 * Returns 0 or -EINVAL. */
int rm_region_conf_check(const rm_region_conf_t *conf, const char **why);

/* Create, size, seal, map and initialise a region. Returns 0 or -errno;
 * on failure nothing is left open or mapped. */
int rm_region_create(rm_region_t *region, const rm_region_conf_t *conf);

/* Map a region created by another process from its memfd. Takes ownership of
 * `fd` on success only. Returns 0, -EPROTO for a wrong magic or version (or a
 * file too small to hold a header), -EINVAL for inconsistent geometry or a
 * memfd not sealed against shrinking and growing, or -errno. `pool_hint` as
 * for rm_chunk_pool_bind. */
int rm_region_attach(rm_region_t *region, int fd, uint32_t pool_hint);

/* Unmap and close. Safe on a zeroed or already-detached region. */
void rm_region_detach(rm_region_t *region);

/* Bind a local handle on lane `index` (< conf.lane_count). */
void rm_region_lane(const rm_region_t *region, uint32_t index, rm_lane_t *lane);

/* Reset lane `index` to empty and zero its stats (supervisor, when no worker
 * uses it). */
void rm_region_lane_reset(rm_region_t *region, uint32_t index);

#endif
