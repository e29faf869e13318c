/*
 * chunk_pool.h - fixed-size buffers in the region, each tagged with its owner.
 *
 * Allocation is a CAS on a bitmap word (as NGINX Unit does), so a process that
 * dies at any instruction leaves the pool consistent: a chunk is either marked
 * used or not. Every used chunk records the owner that must free it; when a
 * worker dies, rm_chunk_pool_reclaim() frees everything still tagged with it.
 *
 * All functions are safe to call concurrently from any thread of any process
 * that maps the region.
 */
#ifndef RINGMASTER_CHUNK_POOL_H
#define RINGMASTER_CHUNK_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RM_CHUNK_NONE UINT32_MAX

/* Owner tags. Lane i's worker owns chunks tagged RM_OWNER_LANE(i). */
#define RM_OWNER_FREE 0u
#define RM_OWNER_SUPERVISOR 1u
#define RM_OWNER_LANE(i) (2u + (uint32_t)(i))
#define RM_OWNER_IS_LANE(o) ((o) >= 2u)
#define RM_OWNER_LANE_INDEX(o) ((o) - 2u)

/* Shared part: a bitmap of used chunks followed by one owner word per chunk.
 * The chunks themselves live elsewhere in the region (page aligned). */
typedef struct rm_chunk_pool_shared {
    _Atomic uint32_t in_use; /* chunks currently allocated (statistics) */
    uint32_t reserved;
    /* _Atomic uint64_t bitmap[(count + 63) / 64]; _Atomic uint32_t owner[count]; */
} rm_chunk_pool_shared_t;

typedef struct rm_chunk_pool {
    rm_chunk_pool_shared_t *shared; /* borrowed: valid while the region is mapped */
    _Atomic uint64_t *bitmap;       /* derived from shared */
    _Atomic uint32_t *owner;        /* derived from shared */
    unsigned char *chunks;          /* first chunk's first byte */
    uint32_t count;                 /* local copy: chunks in the pool */
    uint32_t chunk_size;            /* local copy: bytes per chunk */
    uint32_t hint;                  /* bitmap word where this process always searches first */
} rm_chunk_pool_t;

/* Bytes the shared bookkeeping for `count` chunks needs. */
size_t rm_chunk_pool_shared_size(uint32_t count);

/* Creator only: zero the bookkeeping in `mem` (all chunks free). */
void rm_chunk_pool_shared_init(void *mem, uint32_t count);

/* Bind a local handle. `chunks` is the first chunk, `count` and `chunk_size`
 * come from the caller's own configuration. `hint_seed` spreads the processes'
 * starting points across the bitmap (a lane index will do). */
void rm_chunk_pool_bind(rm_chunk_pool_t *pool, void *shared_mem, void *chunks, uint32_t count,
                        uint32_t chunk_size, uint32_t hint_seed);

/* Take a free chunk and tag it with `owner` (not RM_OWNER_FREE).
 * Returns its index, or RM_CHUNK_NONE when the pool is exhausted. */
uint32_t rm_chunk_pool_alloc(rm_chunk_pool_t *pool, uint32_t owner);

/* Like rm_chunk_pool_alloc, but only while more than `reserve` chunks are
 * free: the last `reserve` are left to callers of rm_chunk_pool_alloc. The
 * check reads the in_use counter, so it is approximate under concurrency (and
 * errs towards refusing after a crash left the counter high): a reserve is a
 * share kept back, not a guarantee to the chunk. Returns RM_CHUNK_NONE when
 * the pool is at or below the reserve. */
uint32_t rm_chunk_pool_try_alloc_above(rm_chunk_pool_t *pool, uint32_t owner, uint32_t reserve);

/* Return chunk `idx`, which must be tagged `owner`.
 * Returns 0, -EINVAL for an index out of range, -EPERM if `owner` does not own it
 * (the chunk is left untouched). In RM_DEBUG_POISON builds the bytes are
 * overwritten with 0xA5 so a stale reader sees garbage, not old data. */
int rm_chunk_pool_free(rm_chunk_pool_t *pool, uint32_t idx, uint32_t owner);

/* Move chunk `idx` from owner `from` to owner `to` (e.g. a worker hands its
 * response chunk to the supervisor). Returns 0, -EINVAL, or -EPERM when `from`
 * does not own it. */
int rm_chunk_pool_transfer(rm_chunk_pool_t *pool, uint32_t idx, uint32_t from, uint32_t to);

/* The owner tag of chunk `idx` (RM_OWNER_FREE when free), or RM_OWNER_FREE for
 * an index out of range. */
uint32_t rm_chunk_pool_owner(const rm_chunk_pool_t *pool, uint32_t idx);

/* Free every chunk tagged `owner`; call once that owner can no longer touch
 * the pool (its process is dead). Returns the number of chunks freed. */
uint32_t rm_chunk_pool_reclaim(rm_chunk_pool_t *pool, uint32_t owner);

/* Chunks currently allocated. */
uint32_t rm_chunk_pool_in_use(const rm_chunk_pool_t *pool);

/* The first byte of chunk `idx`; idx must be < pool->count. */
static inline unsigned char *rm_chunk_pool_ptr(const rm_chunk_pool_t *pool, uint32_t idx)
{
    return pool->chunks + (size_t)idx * pool->chunk_size;
}

/* True when [off, off+len) lies inside one chunk. */
static inline bool rm_chunk_pool_span_ok(const rm_chunk_pool_t *pool, uint32_t idx, uint32_t off,
                                         uint32_t len)
{
    return idx < pool->count && off <= pool->chunk_size && len <= pool->chunk_size - off;
}

#endif
