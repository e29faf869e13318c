/*
 * chunk_pool.c - owner-tagged fixed-size chunks shared by every process.
 *
 * Shared layout (from the pool's offset in the region):
 *
 *   rm_chunk_pool_shared_t   in_use counter, alone on the first cache line
 *   uint64_t bitmap[words]   bit set: chunk in use (a search hint, see below)
 *   uint32_t owner[count]    who must free each chunk, RM_OWNER_FREE if nobody
 *
 * The owner word is the truth and the bitmap lets allocation skip 64 busy
 * chunks per load. Taking a chunk is a CAS of its owner word FREE -> owner,
 * then setting its bit; giving one back is a CAS owner -> owner|FREEING, then
 * clearing the bit, then storing FREE. This order means a process killed at
 * any instruction leaves every chunk it touched tagged with its own owner (or
 * owner|FREEING), so rm_chunk_pool_reclaim() finds it; the opposite order (bit
 * first) would strand a chunk marked used but owned by nobody.
 *
 * A bit can briefly read clear while the owner word is taken (mid-alloc,
 * mid-free): an allocator that picks it loses the owner CAS and moves on. Bits
 * past `count` in the last word are set at init and never cleared, so no
 * allocation lands there.
 *
 * Every allocation searches first-fit from the process's home word (`hint`,
 * spread per process so they rarely share a word). The lowest free chunks are
 * the ones just freed, still in cache, so the pages a process touches stay
 * about as many as it holds at its peak: a search that moved on from where it
 * last succeeded would sweep the whole region and make all of it resident.
 *
 * Only an owner frees, transfers or reclaims its own chunks (reclaim only once
 * it is dead); the CASes make a wrong or double free fail with -EPERM without
 * touching the chunk. `in_use` is statistics: a process killed inside an
 * alloc or free may leave it one too high.
 */
#include "ringmaster/chunk_pool.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

/* Set in an owner word while its owner is freeing the chunk. Lane owners stay
 * far below it (a region has at most 1024 lanes). */
#define OWNER_FREEING 0x80000000u

/* Bitmap starts on its own line, away from the hot in_use counter. */
#define BITMAP_OFF 64

static_assert(sizeof(rm_chunk_pool_shared_t) <= BITMAP_OFF, "pool header fits its line");

static inline uint32_t bitmap_words(uint32_t count)
{
    return (uint32_t)(((uint64_t)count + 63) / 64);
}

size_t rm_chunk_pool_shared_size(uint32_t count)
{
    size_t n = BITMAP_OFF + (size_t)bitmap_words(count) * sizeof(uint64_t) +
               (size_t)count * sizeof(uint32_t);
    return (n + 63) & ~(size_t)63;
}

void rm_chunk_pool_shared_init(void *mem, uint32_t count)
{
    rm_chunk_pool_shared_t *shared = mem;
    _Atomic uint64_t *bitmap = (_Atomic uint64_t *)((unsigned char *)mem + BITMAP_OFF);
    uint32_t words = bitmap_words(count);
    _Atomic uint32_t *owner = (_Atomic uint32_t *)(bitmap + words);

    atomic_store_explicit(&shared->in_use, 0, memory_order_relaxed);
    shared->reserved = 0;
    for (uint32_t w = 0; w < words; w++)
        atomic_store_explicit(&bitmap[w], 0, memory_order_relaxed);
    if (count % 64)
        atomic_store_explicit(&bitmap[words - 1], ~0ULL << (count % 64), memory_order_relaxed);
    for (uint32_t i = 0; i < count; i++)
        atomic_store_explicit(&owner[i], RM_OWNER_FREE, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

void rm_chunk_pool_bind(rm_chunk_pool_t *pool, void *shared_mem, void *chunks, uint32_t count,
                        uint32_t chunk_size, uint32_t hint_seed)
{
    uint32_t words = bitmap_words(count);
    pool->shared = shared_mem;
    pool->bitmap = (_Atomic uint64_t *)((unsigned char *)shared_mem + BITMAP_OFF);
    pool->owner = (_Atomic uint32_t *)(pool->bitmap + words);
    pool->chunks = chunks;
    pool->count = count;
    pool->chunk_size = chunk_size;
    /* Spread processes over the bitmap so they rarely fight over one word. */
    pool->hint = words ? (uint32_t)(((uint64_t)hint_seed * 7919u) % words) : 0;
}

static bool owner_valid(uint32_t owner)
{
    return owner != RM_OWNER_FREE && !(owner & OWNER_FREEING);
}

uint32_t rm_chunk_pool_alloc(rm_chunk_pool_t *pool, uint32_t owner)
{
    uint32_t words = bitmap_words(pool->count);
    if (!owner_valid(owner) || words == 0)
        return RM_CHUNK_NONE;

    for (uint32_t i = 0; i < words; i++) {
        /* The handle is caller memory: never trust hint to be < words. */
        uint32_t w = (uint32_t)(((uint64_t)pool->hint + i) % words);
        uint64_t busy = atomic_load_explicit(&pool->bitmap[w], memory_order_relaxed);
        while (busy != ~0ULL) {
            unsigned bit = (unsigned)__builtin_ctzll(~busy);
            busy |= 1ULL << bit; /* whatever happens, do not try this one again */
            uint32_t idx = w * 64 + bit;
            if (idx >= pool->count)
                break; /* padding bits were cleared by someone: ignore them */

            /* Count first, so that dying right after the owner CAS leaves the
             * counter high rather than wrapping below zero on reclaim. */
            atomic_fetch_add_explicit(&pool->shared->in_use, 1, memory_order_relaxed);
            uint32_t expected = RM_OWNER_FREE;
            if (!atomic_compare_exchange_strong_explicit(&pool->owner[idx], &expected, owner,
                                                         memory_order_acquire,
                                                         memory_order_relaxed)) {
                atomic_fetch_sub_explicit(&pool->shared->in_use, 1, memory_order_relaxed);
                continue;
            }
            atomic_fetch_or_explicit(&pool->bitmap[w], 1ULL << bit, memory_order_relaxed);
            return idx;
        }
    }
    return RM_CHUNK_NONE;
}

uint32_t rm_chunk_pool_try_alloc_above(rm_chunk_pool_t *pool, uint32_t owner, uint32_t reserve)
{
    uint32_t used = atomic_load_explicit(&pool->shared->in_use, memory_order_relaxed);
    if (used >= pool->count || pool->count - used <= reserve)
        return RM_CHUNK_NONE;
    return rm_chunk_pool_alloc(pool, owner);
}

/* Clear the bit of a chunk whose owner word we hold as owner|FREEING, then
 * publish it as free. */
static void release(rm_chunk_pool_t *pool, uint32_t idx)
{
    atomic_fetch_and_explicit(&pool->bitmap[idx / 64], ~(1ULL << (idx % 64)), memory_order_relaxed);
    /* Release: our last writes to the chunk (the poison) happen before the
     * next owner's acquire CAS. */
    atomic_store_explicit(&pool->owner[idx], RM_OWNER_FREE, memory_order_release);
    atomic_fetch_sub_explicit(&pool->shared->in_use, 1, memory_order_relaxed);
}

int rm_chunk_pool_free(rm_chunk_pool_t *pool, uint32_t idx, uint32_t owner)
{
    if (idx >= pool->count)
        return -EINVAL;
    if (!owner_valid(owner))
        return -EPERM;
    uint32_t expected = owner;
    if (!atomic_compare_exchange_strong_explicit(&pool->owner[idx], &expected,
                                                 owner | OWNER_FREEING, memory_order_acquire,
                                                 memory_order_relaxed))
        return -EPERM;
#ifdef RM_DEBUG_POISON
    memset(rm_chunk_pool_ptr(pool, idx), 0xA5, pool->chunk_size);
#endif
    release(pool, idx);
    return 0;
}

int rm_chunk_pool_transfer(rm_chunk_pool_t *pool, uint32_t idx, uint32_t from, uint32_t to)
{
    if (idx >= pool->count || !owner_valid(to))
        return -EINVAL;
    if (!owner_valid(from))
        return -EPERM;
    uint32_t expected = from;
    if (!atomic_compare_exchange_strong_explicit(&pool->owner[idx], &expected, to,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return -EPERM;
    return 0;
}

uint32_t rm_chunk_pool_owner(const rm_chunk_pool_t *pool, uint32_t idx)
{
    if (idx >= pool->count)
        return RM_OWNER_FREE;
    /* A chunk being freed still belongs to its owner until the free ends. */
    return atomic_load_explicit(&pool->owner[idx], memory_order_acquire) & ~OWNER_FREEING;
}

uint32_t rm_chunk_pool_reclaim(rm_chunk_pool_t *pool, uint32_t owner)
{
    if (!owner_valid(owner))
        return 0;
    uint32_t freed = 0;
    for (uint32_t idx = 0; idx < pool->count; idx++) {
        uint32_t cur = atomic_load_explicit(&pool->owner[idx], memory_order_relaxed);
        /* owner|FREEING: the owner died inside rm_chunk_pool_free. */
        if (cur != owner && cur != (owner | OWNER_FREEING))
            continue;
        if (!atomic_compare_exchange_strong_explicit(&pool->owner[idx], &cur, owner | OWNER_FREEING,
                                                     memory_order_acquire, memory_order_relaxed))
            continue;
#ifdef RM_DEBUG_POISON
        memset(rm_chunk_pool_ptr(pool, idx), 0xA5, pool->chunk_size);
#endif
        release(pool, idx);
        freed++;
    }
    return freed;
}

uint32_t rm_chunk_pool_in_use(const rm_chunk_pool_t *pool)
{
    return atomic_load_explicit(&pool->shared->in_use, memory_order_relaxed);
}
