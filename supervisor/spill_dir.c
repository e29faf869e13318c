/*
 * spill_dir.c - the private spill directory and the sweep of dead instances'
 * leftovers (spill_dir.h).
 */
#include "ringmaster/spill_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUFFIX ".body"

static void say(void (*log)(const char *), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(void (*log)(const char *), const char *fmt, ...)
{
    char line[1600];
    va_list ap;
    if (!log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(line);
}

/* Ours: a real directory (the caller used O_NOFOLLOW), owned by `owner`,
 * readable by nobody else. */
static bool looks_ours(const struct stat *st, uid_t owner)
{
    return S_ISDIR(st->st_mode) && st->st_uid == owner && (st->st_mode & 07777) == 0700;
}

/* Remove the *.body files of a locked, dead instance's directory, then the
 * directory. Other entries (someone with our uid put them there) stay, and
 * so does the directory then. */
static int remove_leftover(int parent_fd, const char *name, int dfd, void (*log)(const char *))
{
    int dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    int files = 0;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return -errno;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct stat st;
        if (n <= strlen(SUFFIX) || strcmp(e->d_name + n - strlen(SUFFIX), SUFFIX) != 0)
            continue;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dfd, e->d_name, 0) == 0)
            files++;
    }
    closedir(d);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0) {
        int err = errno;
        say(log,
            "spill directory %s of an earlier instance: removed %d file(s), kept the "
            "directory: %s",
            name, files, strerror(err));
        return -err;
    }
    say(log, "removed spill directory %s left by an earlier instance (%d spilled bod%s)", name,
        files, files == 1 ? "y" : "ies");
    return 0;
}

int rm_spill_dir_sweep(const char *parent, uid_t owner, void (*log)(const char *))
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "ringmaster-%u-", (unsigned)owner);
    size_t plen = strlen(prefix);
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return -errno;
    int dup_fd = dup(pfd);
    DIR *list = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!list) {
        int err = errno;
        if (dup_fd >= 0)
            close(dup_fd);
        close(pfd);
        return -err;
    }
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(list)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0)
            continue;
        struct stat before, st;
        /* lstat first: a symlink or anything not ours is never opened. */
        if (fstatat(pfd, e->d_name, &before, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (!looks_ours(&before, owner)) {
            say(log,
                "spill directory %s/%s is not ours (a symlink, another owner, or not "
                "mode 0700): left alone",
                parent, e->d_name);
            continue;
        }
        int dfd = openat(pfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            continue;
        /* The same directory we looked at, and no live instance holds it. */
        if (fstat(dfd, &st) < 0 || st.st_dev != before.st_dev || st.st_ino != before.st_ino ||
            !looks_ours(&st, owner) || flock(dfd, LOCK_EX | LOCK_NB) < 0) {
            close(dfd);
            continue;
        }
        if (remove_leftover(pfd, e->d_name, dfd, log) == 0)
            removed++;
        close(dfd); /* lets the lock go */
    }
    closedir(list);
    close(pfd);
    return removed;
}

int rm_spill_dir_open(rm_spill_dir_t *d, const char *parent, uid_t owner, gid_t group, char *err,
                      size_t err_len)
{
    d->fd = -1;
    for (int attempt = 0; attempt < 8; attempt++) {
        if ((size_t)snprintf(d->path, sizeof(d->path), "%s/ringmaster-%u-%d.XXXXXX", parent,
                             (unsigned)owner, (int)getpid()) >= sizeof(d->path)) {
            snprintf(err, err_len, "--spill-dir %s: path too long", parent);
            return -ENAMETOOLONG;
        }
        /* mkdtemp: a name nobody could guess, created 0700, never an
         * existing entry. */
        if (!mkdtemp(d->path)) {
            int rc = -errno;
            snprintf(err, err_len, "--spill-dir %s: cannot create a private directory in it: %s",
                     parent, strerror(errno));
            return rc;
        }
        int fd = open(d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st, now;
        if (fd < 0 || fstat(fd, &st) < 0) {
            int rc = -errno;
            snprintf(err, err_len, "--spill-dir %s: cannot open %s: %s", parent, d->path,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            rmdir(d->path);
            return rc;
        }
        /* Another instance's sweep may hold this brand-new directory (it
         * matched the pattern before we locked it) and be about to remove
         * it: then take another name. */
        if (flock(fd, LOCK_EX | LOCK_NB) < 0 || lstat(d->path, &now) < 0 ||
            now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
            close(fd);
            continue;
        }
        int rc = 0;
        if (fchmod(fd, 0700) < 0 || (st.st_uid != owner && fchown(fd, owner, group) < 0))
            rc = -errno;
        if (rc < 0) {
            snprintf(err, err_len, "--spill-dir %s: cannot give %s to uid %u: %s", parent, d->path,
                     (unsigned)owner, strerror(-rc));
            close(fd);
            rmdir(d->path);
            return rc;
        }
        d->fd = fd;
        return 0;
    }
    snprintf(err, err_len, "--spill-dir %s: could not create a private directory", parent);
    return -EAGAIN;
}

int rm_spill_dir_file_path(const rm_spill_dir_t *d, uint64_t seq, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%llu" SUFFIX, d->path, (unsigned long long)seq);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : n;
}

int rm_spill_dir_create(const rm_spill_dir_t *d, uint64_t seq)
{
    char name[32];
    snprintf(name, sizeof(name), "%llu" SUFFIX, (unsigned long long)seq);
    int fd = openat(d->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

int rm_spill_dir_unlink(const rm_spill_dir_t *d, uint64_t seq)
{
    char name[32];
    snprintf(name, sizeof(name), "%llu" SUFFIX, (unsigned long long)seq);
    return unlinkat(d->fd, name, 0) < 0 ? -errno : 0;
}

void rm_spill_dir_close(rm_spill_dir_t *d)
{
    if (d->fd < 0)
        return;
    /* Every request removed its file; anything left (a write that raced the
     * shutdown) goes with the directory. */
    int dup_fd = dup(d->fd);
    DIR *list = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (list) {
        struct dirent *e;
        while ((e = readdir(list)) != NULL)
            if (e->d_name[0] != '.')
                unlinkat(d->fd, e->d_name, 0);
        closedir(list);
    } else if (dup_fd >= 0) {
        close(dup_fd);
    }
    rmdir(d->path);
    close(d->fd);
    d->fd = -1;
}
