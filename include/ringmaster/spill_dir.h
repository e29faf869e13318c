/*
 * spill_dir.h - the supervisor's private directory for spilled request bodies
 * (docs/http.md "Large request bodies", docs/security.md).
 *
 * --spill-dir is often a shared, world-writable place (/tmp). Files with
 * predictable names there could be created first by another local user (every
 * spill then fails) or planted as symlinks. So each supervisor makes a
 * directory of its own inside it, with an unpredictable name,
 *
 *     SPILL_DIR/ringmaster-UID-PID.XXXXXX/     mode 0700, owned by UID
 *         1.body  2.body ...                   mode 0600, O_EXCL|O_NOFOLLOW
 *
 * where UID is the user the supervisor runs as (after --user) and PID its pid
 * (for the operator's eyes only: nothing relies on it). All file operations go
 * through the directory's descriptor, so the path is resolved once.
 *
 * The directory's descriptor holds an exclusive flock(2) while its supervisor
 * lives. The lock goes with the process, however it dies (kill -9 included),
 * so at start-up a directory named ringmaster-UID-* that is a real directory
 * (not a symlink), owned by UID, mode 0700, and whose lock can be taken, is
 * provably an earlier instance's leftover: its *.body files and the directory
 * are removed. Anything else is left alone. This works across pid namespaces
 * sharing the directory, where a pid means nothing.
 */
#ifndef RINGMASTER_SPILL_DIR_H
#define RINGMASTER_SPILL_DIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RM_SPILL_DIR_PATH_MAX 1200 /* --spill-dir (< 1024) plus our directory's name */

typedef struct rm_spill_dir {
    int fd;                           /* the private directory, locked; -1 when closed */
    char path[RM_SPILL_DIR_PATH_MAX]; /* its absolute path, as workers open files in it */
} rm_spill_dir_t;

/* Remove what dead instances running as `owner` left in `parent` (see above).
 * Returns how many directories were removed, or -errno when `parent` cannot
 * be read. `log` (may be NULL) is told about each removal and each directory
 * that looked like ours but was refused, one line each. */
int rm_spill_dir_sweep(const char *parent, uid_t owner, void (*log)(const char *line));

/* Create and lock a fresh private directory in `parent`, given to
 * `owner`:`group` (the --user the supervisor becomes; the creator itself when
 * it is not root). Returns 0, or -errno with one readable line in err. */
int rm_spill_dir_open(rm_spill_dir_t *d, const char *parent, uid_t owner, gid_t group, char *err,
                      size_t err_len);

/* Create spill file `seq` for writing: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600.
 * Returns the descriptor (close-on-exec) or -errno. */
int rm_spill_dir_create(const rm_spill_dir_t *d, uint64_t seq);

/* The absolute path of spill file `seq` into buf; its length, or -ENAMETOOLONG. */
int rm_spill_dir_file_path(const rm_spill_dir_t *d, uint64_t seq, char *buf, size_t len);

/* Remove spill file `seq`. 0 or -errno (-ENOENT when it is already gone). */
int rm_spill_dir_unlink(const rm_spill_dir_t *d, uint64_t seq);

/* Remove the (by now empty) directory and let its lock go. Safe on a closed
 * or never opened one (fd -1). */
void rm_spill_dir_close(rm_spill_dir_t *d);

#endif
